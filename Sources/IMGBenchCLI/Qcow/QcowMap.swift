import ArgumentParser
import Host
import QcowIO

struct QcowMap: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "map",
        abstract: "Bytes allocated at each depth of a backing chain, and which image supplies each guest range.")

    @Argument(help: "The top image of the chain.", transform: absolutePath) var image: String
    @Option(help: "table or json.") var format: OutputFormat = .table
    @Flag(help: "List every extent (guest range and its source) in the table too.") var extents = false

    /// What a new empty qcow2 overlay backed by `image` occupies on disk: made in a scratch
    /// folder and removed.
    static func emptyOverlayBytes(on image: String) throws -> UInt64 {
        let scratch = try TemporaryFolder.make(prefix: "imgbench-map")
        defer { try? FileSystem.removeTree(scratch) }
        let overlay = "\(scratch)/one-more.qcow2"
        try QcowImage.create(path: overlay, options: Qcow2CreateOptions(virtualSize: 0, backingFile: image, backingFormat: nil)).close()
        return try FileSystem.allocatedBytes(overlay)
    }

    func run() throws {
        try reportingErrors {
            let map = try AllocationMap.compute(try DiskImages.open(image))
            switch format {
            case .json:
                printOut(try JSONOutput.string(map))
            case .table:
                var t = TextTable(header: ["depth", "image", "format", "allocated", "compressed", "zero", "visible", "on disk"])
                for l in map.chain {
                    t.rows.append(["\(l.depth)", l.path, l.format, ByteSize.format(l.allocatedBytes), ByteSize.format(l.compressedBytes),
                                   ByteSize.format(l.zeroBytes), ByteSize.format(l.visibleBytes), ByteSize.format(l.diskBytes)])
                }
                printOut(t.render())
                printOut("")
                printOut("virtual size \(ByteSize.format(map.virtualSize)); unallocated \(ByteSize.format(map.unallocatedBytes)); "
                    + "the top image alone: \(ByteSize.format(map.topImageDiskBytes)) on disk")
                if let overlay = try? Self.emptyOverlayBytes(on: image) {
                    printOut("one more VM on this chain is a new overlay on it: \(ByteSize.format(overlay)) on disk until the VM writes "
                        + "(imgbench measure clone times it)")
                }
                if extents {
                    printOut("")
                    var e = TextTable(header: ["start", "length", "depth", "data", "zero", "compressed"])
                    for x in map.extents {
                        e.rows.append(["\(x.start)", "\(x.length)", x.depth.map { "\($0)" } ?? "-", "\(x.data)", "\(x.zero)", "\(x.compressed)"])
                    }
                    printOut(e.render())
                }
            }
        }
    }
}
