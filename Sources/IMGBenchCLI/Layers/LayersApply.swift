import ArgumentParser
import Foundation
import Host
import ImageBuild
import Layers
import OCI

struct LayersApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Unpack a layer file, or every layer of an image, into a directory, honouring whiteouts.",
        discussion: """
        Entries that would land outside the directory (.., absolute paths, paths through symlinks, \
        symlinks pointing above the root, hardlinks to anything but an earlier entry of the layer) \
        are refused with an error naming the entry, and so are device nodes when not root.
        """)

    @Argument(help: "A layer file (tar, tar.gz or tar.zst), or with --layout nothing.", transform: absolutePath) var layer: String?
    @Option(help: "Apply every layer of the image DIR[:TAG] of an OCI layout instead, checking each digest.") var layout: LayoutReference?
    @Option(name: .shortAndLong, help: "The directory to unpack into (made if missing).", transform: absolutePath) var target: String?
    @Option(help: "Unpack the --layout image onto this storage driver instead (see imgbench drivers).") var driver: StorageDriverKind?
    @Option(help: "The driver's store directory, for --driver.", transform: absolutePath) var store: String?
    @Option(help: "table or json.") var format: OutputFormat = .table
    @Option(help: "auto (a live display on a terminal, plain lines otherwise), plain, tty or quiet.") var progress: ProgressMode = .auto

    struct Report: Codable {
        var layer: String
        var digest: String
        var entries: Int
        var whiteouts: Int
        var opaqueDirectories: Int
        var bytes: Int64
    }

    func validate() throws {
        guard (layer == nil) != (layout == nil) else { throw ValidationError("give a layer file or --layout DIR:TAG, not both") }
        if driver != nil {
            guard layout != nil, store != nil, target == nil else {
                throw ValidationError("--driver unpacks a --layout image into --store; it takes no --target")
            }
        } else if target == nil {
            throw ValidationError("give --target DIR (or --driver NAME --store DIR with --layout)")
        }
    }

    struct DriverRow: Codable {
        var layer: String
        var driverLayer: String
        var reused: Bool
    }

    func run() throws {
        if let driver, let store, let ref = layout {
            return try reportingErrors { try Interrupts.releasing { try runOnDriver(driver.rawValue, store: store, ref: ref) } }
        }
        guard let target else { return }
        try reportingErrors {
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            var jobs: [(String, Digest?)] = []
            if let layer { jobs = [(layer, nil)] }
            if let ref = layout {
                let l = try ImageLayout(opening: ref.path)
                let img = try l.image(tag: ref.tag)
                jobs = img.manifest.layers.map { (l.blobs.path(of: $0.digest), $0.digest) }
            }
            var reports: [Report] = []
            for (file, digest) in jobs {
                let bar = TerminalProgress(label: "apply \(digest.map { String($0.description.prefix(19)) } ?? file)", mode: progress)
                let r = try LayerApply.apply(layer: file, to: target, expecting: digest) { bar.update($0, $1) }
                reports.append(Report(layer: file, digest: r.digest.description, entries: r.entries, whiteouts: r.whiteouts,
                                      opaqueDirectories: r.opaqueDirectories, bytes: r.bytes))
            }
            switch format {
            case .json: printOut(try JSONOutput.string(reports))
            case .table:
                var t = TextTable(header: ["layer", "entries", "whiteouts", "opaque", "bytes"])
                t.rows = reports.map { [String($0.digest.prefix(19)), "\($0.entries)", "\($0.whiteouts)", "\($0.opaqueDirectories)", ByteSize.format(UInt64($0.bytes))] }
                printOut(t.render())
            }
        }
    }

    /// Each layer of the image becomes a driver layer named by its chain ID; layers the driver
    /// already has are reused.
    func runOnDriver(_ name: String, store: String, ref: LayoutReference) throws {
        let l = try ImageLayout(opening: ref.path)
        let img = try l.image(tag: ref.tag)
        let d = try StorageDrivers.open(name, store: store)
        defer { try? d.close() }
        let ids = DriverImport.chainIDs(img.config.rootfs.diffIDs).map(\.hex)
        let present = ids.map { d.hasLayer($0) }
        try DriverImport.importImage(img, from: l, into: d)
        let rows = zip(img.manifest.layers, zip(ids, present)).map { DriverRow(layer: $0.digest.description, driverLayer: $1.0, reused: $1.1) }
        switch format {
        case .json: printOut(try JSONOutput.string(rows))
        case .table:
            var t = TextTable(header: ["layer", "\(name) layer", "state"])
            t.rows = rows.map { [String($0.layer.prefix(19)), $0.driverLayer, $0.reused ? "reused" : "applied"] }
            printOut(t.render())
        }
    }
}
