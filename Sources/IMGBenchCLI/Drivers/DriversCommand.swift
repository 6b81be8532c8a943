import ArgumentParser
import Foundation
import Host
import Layers

/// `imgbench drivers`: which storage drivers work here, and with --measure what one step costs on each.
public struct DriversCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "drivers",
        abstract: "List the storage drivers, whether each works here and why not; --measure runs one step on each.",
        discussion: """
        --measure imports a base tree (--base, or a generated one of --base-files files) as a first \
        layer, prepares a writable root on it, runs --script there, captures the diff, and reports \
        prepare and capture time, the bytes of the writable layer, and what one more clone costs.
        """)

    @Flag(help: "Run one step on every working driver and report its costs.") var measure = false
    @Option(help: "Only these drivers (comma-separated).") var only: String?
    @Option(help: "A directory to use as the base layer for --measure.", transform: absolutePath) var base: String?
    @Option(help: "Files in the generated base for --measure.") var baseFiles: Int = 2000
    @Option(help: "Shell commands run in the writable root for --measure.")
    var script = "mkdir -p new && head -c 8388608 /dev/urandom > new/blob && rm -rf d1 && echo changed > f1"
    @Option(help: "Where drivers keep their layers for --measure (default: a temporary directory, removed after).", transform: absolutePath) var store: String?
    @Option(help: "gzip, zstd or none.") var compression: LayerCompression = .gzip
    @Option(help: "table or json.") var format: OutputFormat = .table

    public init() {}

    public func validate() throws {
        guard (0...10_000_000).contains(baseFiles) else { throw ValidationError("--base-files must be 0 to 10000000") }
    }

    public func run() throws {
        try reportingErrors {
            try Interrupts.releasing {
                var names = StorageDrivers.names
                if let only {
                    names = only.split(separator: ",").map(String.init)
                    for n in names where !StorageDrivers.names.contains(n) {
                        throw ValidationError("unknown driver \(n); known: \(StorageDrivers.names.joined(separator: ", "))")
                    }
                }
                if !measure {
                    let statuses = names.map(StorageDrivers.probe)
                    switch format {
                    case .json: printOut(try JSONOutput.string(statuses))
                    case .table:
                        var t = TextTable(header: ["driver", "works", "what it is", "notes"])
                        t.rows = statuses.map { [$0.name, $0.works ? "yes" : "no", $0.summary, $0.reason] }
                        printOut(t.render())
                    }
                    return
                }
                try measureAll(names)
            }
        }
    }

    func measureAll(_ names: [String]) throws {
        let tmp = NSTemporaryDirectory() + "/imgbench-drivers-\(getpid())"
        let root = store ?? tmp
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if store == nil { try? FileManager.default.removeItem(atPath: tmp) } }
        let baseDir: String
        if let base { baseDir = base } else {
            baseDir = root + "/base"
            try makeBase(baseDir)
        }
        let options = CaptureOptions(compression: compression, sourceDateEpoch: CaptureOptions.environmentEpoch)
        var reports: [DriverReport] = []
        for n in names {
            printErr("drivers: measuring \(n)")
            reports.append(try DriverTrial.run(driver: n, store: root + "/" + n, base: baseDir, options: options) { dir in
                _ = try Command.shell(script, in: dir)
            })
            try? FileManager.default.removeItem(atPath: root + "/" + n)
        }
        switch format {
        case .json: printOut(try JSONOutput.string(reports))
        case .table:
            func ms(_ s: Double?) -> String { s.map { String(format: "%.1f", $0 * 1000) } ?? "-" }
            func b(_ v: UInt64?) -> String { v.map { ByteSize.format($0) } ?? "-" }
            var t = TextTable(header: ["driver", "prepare ms", "capture ms", "writable layer", "layer", "clone ms", "clone bytes", "notes"])
            t.rows = reports.map { r in
                [r.driver, ms(r.prepareSeconds), ms(r.captureSeconds), b(r.writableBytes), b(r.layerBytes.map { UInt64($0) }),
                 ms(r.cloneSeconds), b(r.cloneBytes), r.error ?? (r.works ? "" : r.reason)]
            }
            printOut(t.render())
        }
    }

    /// A base of `baseFiles` small files in 20 directories, plus the files the default script touches.
    func makeBase(_ dir: String) throws {
        let fm = FileManager.default
        for d in 0..<20 { try fm.createDirectory(atPath: "\(dir)/d\(d)", withIntermediateDirectories: true) }
        guard let random = FileHandle(forReadingAtPath: "/dev/urandom")?.readData(ofLength: 9216 + 4096 * 20) else {
            throw ValidationError("cannot read /dev/urandom")
        }
        for i in 0..<baseFiles {
            let start = (i * 4096) % (4096 * 20)
            _ = fm.createFile(atPath: "\(dir)/d\(i % 20)/f\(i)", contents: random.subdata(in: start..<(start + 1024 + (i * 977) % 8192)))
        }
        _ = fm.createFile(atPath: "\(dir)/f1", contents: Data("original\n".utf8))
    }
}
