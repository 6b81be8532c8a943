import ArgumentParser
import Foundation
import Host
import OCI
import QcowIO

struct QcowConvert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a raw or qcow2 image (any chain) to a new qcow2 image.",
        discussion: """
            Zero clusters are skipped. With --backing, only clusters that differ from the backing \
            chain are written: the block-level difference of two disks. The output appears under its \
            name only when complete.
            """)

    @Argument(help: "The source image (raw or qcow2).", transform: absolutePath) var source: String
    @Argument(help: "The qcow2 image to write.", transform: absolutePath) var destination: String
    @Flag(name: [.short, .long], help: "Store clusters deflate-compressed, on every core.") var compress = false
    @Option(name: [.short, .customLong("backing")], help: "Write only what differs from this image; it becomes the backing file.")
    var backing: String?
    @Option(name: [.customShort("F"), .customLong("backing-format")], help: "Backing file format (probed when left out).")
    var backingFormat: String?
    @Option(name: .customLong("source-format"), help: "Source format: qcow2 or raw (probed when left out).") var sourceFormat: String?
    @Option(help: "Cluster size, 512 to 2M.") var clusterSize = ByteSize(bytes: 65536)
    @Option(help: "Compression threads (default: every core).") var threads: Int?
    @Option(help: "auto (a live display on a terminal, plain lines otherwise), plain, tty or quiet.") var progress: ProgressMode = .auto
    @Option(help: "table or json (the conversion's figures).") var format: OutputFormat = .table

    func validate() throws {
        try clusterSize.validateClusterSize()
        if let t = threads, !(1...maxThreads).contains(t) { throw ValidationError("--threads must be 1 to \(maxThreads)") }
    }

    func run() throws {
        try reportingErrors {
            let src = try DiskImages.open(source, format: sourceFormat)
            var o = Qcow2ConvertOptions(clusterSize: Int(clusterSize.bytes), compress: compress, backingFile: backing)
            if let b = backing {
                o.backingFormat = try backingFormat ?? DiskImages.probe(QcowImage.resolve(backing: b, relativeTo: destination))
            }
            if let t = threads { o.threads = t }
            let bar = TerminalProgress(label: "convert \(source)", mode: progress)
            let start = Date()
            let stats = try Interrupts.removing(destination + ".partial") {
                try Qcow2Converter.convert(source: src, to: destination, options: o, progress: bar.update)
            }
            let seconds = Date().timeIntervalSince(start)
            switch format {
            case .json:
                struct Out: Encodable { var source: String; var destination: String; var seconds: Double; var stats: Qcow2ConvertStats }
                printOut(try JSONOutput.string(Out(source: source, destination: destination, seconds: seconds, stats: stats)))
            case .table:
                printOut("\(destination): \(ByteSize.format(stats.fileBytes)) for \(ByteSize.format(stats.virtualSize)) virtual in "
                    + String(format: "%.2f s", seconds))
                printOut("clusters: \(stats.dataClusters) stored (\(stats.compressedClusters) compressed), "
                    + "\(stats.zeroClustersSkipped) zero skipped, \(stats.sameAsBackingSkipped) same as backing, "
                    + "\(stats.zeroClustersMarked) marked zero")
            }
        }
    }
}
