import ArgumentParser
import Foundation
import Host
import Layers
import OCI
import QcowIO

struct LayersCapture: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "capture",
        abstract: "Capture a directory as an OCI layer: a whole tree, or the upper directory of an overlay or aufs mount.",
        discussion: """
        The layer goes to a file (--output) or into an OCI image layout (--layout DIR:TAG), where it \
        becomes the top layer of the image TAG (which is made if it does not exist). Entries are \
        sorted and, when SOURCE_DATE_EPOCH is set, their mtimes are clamped to it, so the same \
        content always gives the same digest.
        """)

    enum Source: String, ExpressibleByArgument, CaseIterable {
        case tree, overlayUpper = "overlay-upper", aufsUpper = "aufs-upper"
    }

    @Argument(help: "The directory to capture.", transform: absolutePath) var directory: String
    @Option(help: "What the directory is: tree, overlay-upper (0/0 devices are whiteouts) or aufs-upper.") var from: Source = .tree
    @Option(help: "With --from tree: capture only how the directory differs from this one (its parent), with whiteouts for what is gone.",
            transform: absolutePath)
    var parent: String?
    @Option(help: "gzip, zstd or none.") var compression: LayerCompression = .gzip
    @Option(help: "Compression level (gzip 1-9, default 6; zstd 1-19, default 3).") var level: Int?
    @Option(help: "Compression threads (default: every core).") var threads: Int = Processors.count
    @Option(name: .shortAndLong, help: "Write the layer to this file.", transform: absolutePath) var output: String?
    @Option(help: "Add the layer to the image DIR:TAG of an OCI layout (made if missing).") var layout: LayoutReference?
    @Option(help: "The history entry's created_by for --layout.") var createdBy: String?
    @Option(help: "table or json.") var format: OutputFormat = .table
    @Option(help: "auto (a live display on a terminal, plain lines otherwise), plain, tty or quiet.") var progress: ProgressMode = .auto

    func validate() throws {
        guard (output == nil) != (layout == nil) else { throw ValidationError("give exactly one of --output FILE or --layout DIR:TAG") }
        if let l = level {
            let range = compression == .gzip ? 1...9 : 1...19
            guard range.contains(l), compression != .none else {
                throw ValidationError(compression == .none ? "--level needs --compression gzip or zstd" : "--level for \(compression.rawValue) must be \(range.lowerBound)-\(range.upperBound)")
            }
        }
        guard (1...maxThreads).contains(threads) else { throw ValidationError("--threads must be 1 to \(maxThreads)") }
        if parent != nil && from != .tree { throw ValidationError("--parent compares two trees; it goes with --from tree") }
    }

    func run() throws {
        try reportingErrors {
            try Interrupts.releasing {
                let source: DiffSource = switch from {
                case .tree: try parent.map { .compare(root: directory, baseline: try Baseline.scan($0, inodes: false)) } ?? .tree(directory)
                case .overlayUpper: .overlayUpper(directory)
                case .aufsUpper: .aufsUpper(directory)
                }
                var options = CaptureOptions(compression: compression, level: level, sourceDateEpoch: CaptureOptions.environmentEpoch, threads: threads)
                let bar = TerminalProgress(label: "capture \(directory)", mode: progress)
                options.progress = { done, total in bar.update(done, total) }
                let summary: LayerSummary
                if let output {
                    summary = LayerSummary(try LayerCapture.capture(source, toFile: output, options: options), file: output, image: nil)
                } else if let ref = layout {
                    let tag = ref.tag ?? "latest"
                    let l = try ImageLayout.create(at: ref.path)
                    let r = try LayerCapture.capture(source, into: l.blobs, options: options)
                    try appendLayer(r.layer, to: l, tag: tag)
                    summary = LayerSummary(r, file: nil, image: "\(ref.path):\(tag)")
                } else {
                    return
                }
                switch format {
                case .json: printOut(try JSONOutput.string(summary))
                case .table: printOut(summary.table)
                }
            }
        }
    }

    /// The image `tag` with one more layer on top (or a new image of this one layer).
    func appendLayer(_ layer: StoredLayer, to l: ImageLayout, tag: String) throws {
        let created = ISO8601DateFormatter().string(from: CaptureOptions.environmentEpoch.map { Date(timeIntervalSince1970: Double($0)) } ?? Date())
        let step = History(created: created, createdBy: createdBy ?? "imgbench layers capture \(directory)")
        var layers: [StoredLayer] = []
        var history: [History] = []
        var config: ContainerConfig?
        if (try l.index().manifests.contains { $0.refName == tag }) {
            let img = try l.image(tag: tag)
            layers = zip(img.manifest.layers, img.config.rootfs.diffIDs).map { StoredLayer(descriptor: $0, diffID: $1, uncompressedSize: -1) }
            history = img.config.history ?? img.manifest.layers.map { _ in History(createdBy: "") }
            config = img.config.config
        }
        try l.writeImage(layers: layers + [layer], config: config, history: history + [step], created: created, tag: tag)
    }
}
