import ArgumentParser
import QcowIO

/// What `imgbench qcow info --format json` prints, one object per image of the chain.
struct ImageInfo: Codable {
    var filename: String
    var format: String
    var virtualSize: UInt64
    var fileBytes: UInt64
    var diskBytes: UInt64
    var version: UInt32?
    var clusterSize: Int?
    var refcountBits: Int?
    var compressionType: String?
    var backingFile: String?
    var backingFormat: String?
    var incompatibleFeatures: [String]?
    var compatibleFeatures: [String]?
    var dirty: Bool?
    var corrupt: Bool?
    var snapshots: [SnapshotInfo]?
    var headerExtensions: [String]?

    struct SnapshotInfo: Codable {
        var id: String
        var name: String
        var date: UInt32
        var diskSize: UInt64?
    }

    init(_ img: DiskImage) throws {
        filename = img.path
        format = img.formatName
        virtualSize = img.virtualSize
        if let q = img as? QcowImage {
            fileBytes = try q.file.size()
            diskBytes = try q.file.allocatedBytes()
            let h = q.header
            version = h.version
            clusterSize = q.clusterSize
            refcountBits = 1 << Int(h.refcountOrder)
            compressionType = h.compressionType == 0 ? "zlib" : "zstd"
            backingFile = q.backingFileName
            backingFormat = q.backingFormat
            func names(_ bits: UInt64, kind: UInt8) -> [String] {
                (0..<64).filter { bits & (1 << UInt64($0)) != 0 }.map { bit in
                    q.featureNames.first { $0.kind == kind && Int($0.bit) == bit }?.name ?? "bit \(bit)"
                }
            }
            incompatibleFeatures = names(h.incompatibleFeatures.rawValue, kind: 0)
            compatibleFeatures = names(h.compatibleFeatures.rawValue, kind: 1)
            dirty = q.findings.dirty
            corrupt = q.findings.corrupt
            snapshots = q.snapshots.map { SnapshotInfo(id: $0.id, name: $0.name, date: $0.dateSeconds, diskSize: $0.diskSize) }
            headerExtensions = q.extensions.map { e in
                switch Qcow2.ExtensionType(rawValue: e.type) {
                case .backingFormat: return "backing format"
                case .featureNameTable: return "feature name table"
                case .bitmaps: return "bitmaps"
                case .fullDiskEncryption: return "full disk encryption"
                case .externalDataFile: return "external data file"
                default: return "0x" + String(e.type, radix: 16)
                }
            }
        } else if let r = img as? RawImage {
            fileBytes = try r.file.size()
            diskBytes = try r.file.allocatedBytes()
        } else {
            fileBytes = 0
            diskBytes = 0
        }
    }
}

struct QcowInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show an image's header, features, snapshots and backing chain.")

    @Argument(help: "The image.", transform: absolutePath) var image: String
    @Option(help: "table or json.") var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            let infos = try DiskImages.open(image).chain.map(ImageInfo.init)
            switch format {
            case .json:
                printOut(try JSONOutput.string(infos))
            case .table:
                for (depth, i) in infos.enumerated() {
                    if depth > 0 { printOut("") }
                    var lines = [
                        ("image", i.filename), ("depth", "\(depth)"), ("format", i.format),
                        ("virtual size", "\(ByteSize.format(i.virtualSize)) (\(i.virtualSize) bytes)"),
                        ("file length", "\(ByteSize.format(i.fileBytes)) (\(i.fileBytes) bytes; the apparent size, holes included)"),
                        ("on disk", "\(ByteSize.format(i.diskBytes)) (\(i.diskBytes) bytes allocated, as du and qemu-img's disk size count)"),
                    ]
                    if let v = i.version {
                        lines += [("version", "\(v)"), ("cluster size", "\(i.clusterSize ?? 0)"),
                                  ("refcount bits", "\(i.refcountBits ?? 0)"), ("compression", i.compressionType ?? "")]
                        if let b = i.backingFile { lines.append(("backing file", b + (i.backingFormat.map { " (\($0))" } ?? ""))) }
                        lines.append(("incompatible", i.incompatibleFeatures?.joined(separator: ", ").nonEmpty ?? "none"))
                        lines.append(("compatible", i.compatibleFeatures?.joined(separator: ", ").nonEmpty ?? "none"))
                        lines.append(("snapshots", "\(i.snapshots?.count ?? 0)"))
                        lines.append(("extensions", i.headerExtensions?.joined(separator: ", ").nonEmpty ?? "none"))
                    }
                    let w = lines.map(\.0.count).max() ?? 0
                    for (k, v) in lines { printOut(k.padding(toLength: w, withPad: " ", startingAt: 0) + "  " + v) }
                }
            }
        }
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
