import Foundation
import Host
import ImageBuild
import Layers
import OCI
import QcowIO

/// The incremental cost of one more instance of a built image: the storage a new container or VM
/// needs before it starts, in bytes on disk and in time, on every storage driver and for the VM,
/// beside a full copy of the image for contrast.
///
/// - container, per storage driver: the image is imported into the driver's store first (not
///   counted); each clone is a new writable layer prepared on the image's top layer and a runtime
///   bundle (config.json) whose root is that layer's mounted root. Bytes: what the writable layer
///   and the bundle folder allocate. All clones are up at once, as N instances would be.
/// - VM: each clone is a new qcow2 overlay backed by the flattened disk. Bytes: the overlay file's
///   allocated bytes.
/// - full copies: the image's root copied (`cp -a --sparse=always`) and the flattened disk written
///   again as a standalone qcow2 (QcowIO convert): what an instance costs without copy-on-write.
public struct CloneMeasurement: Sendable {
    public var image: BuiltImage
    public var count: Int
    public var repeats: Int
    public var drivers: [String]
    /// Where the drivers' stores and the clones go (removed after).
    public var workdir: String

    public init(image: BuiltImage, count: Int, repeats: Int, drivers: [String], workdir: String) {
        self.image = image
        self.count = count
        self.repeats = repeats
        self.drivers = drivers
        self.workdir = workdir
    }

    public struct Row: Codable, Equatable, Sendable {
        /// "container" or "vm".
        public var kind: String
        /// The storage driver, "qcow2 overlay", or the full copy's kind.
        public var storage: String
        public var available: Bool
        /// Why it is not available here.
        public var reason: String?
        /// Per clone (or per full copy), over every clone of every repeat.
        public var bytes: Summary?
        public var milliseconds: Summary?
        /// Whether this row is a full copy (the contrast), not a copy-on-write clone.
        public var fullCopy: Bool
    }

    public struct Result: Codable, Equatable, Sendable {
        public var schemaVersion = 1
        public var kind = ResultKind.clone
        public var recipe: String
        public var image: String
        public var count: Int
        public var repeats: Int
        /// The image's own size, for scale: uncompressed layers and flattened disk allocation.
        public var imageUncompressedBytes: UInt64?
        public var vmFlattenedAllocatedBytes: UInt64?
        public var rows: [Row]
        /// Where and from what it was measured.
        public var provenance: Provenance? = nil
    }

    public func run(progress: (String) -> Void) throws -> Result {
        let fm = FileManager.default
        try fm.createDirectory(atPath: workdir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: workdir) }
        var samples: [String: (kind: String, full: Bool, bytes: [Double], ms: [Double], reason: String?)] = [:]
        var order: [String] = []
        func add(_ key: String, kind: String, full: Bool, bytes: UInt64? = nil, seconds: Double? = nil, reason: String? = nil) {
            if samples[key] == nil { order.append(key); samples[key] = (kind, full, [], [], reason) }
            if let bytes { samples[key]!.bytes.append(Double(bytes)) }
            if let seconds { samples[key]!.ms.append(seconds * 1000) }
            if let reason { samples[key]!.reason = reason }
        }
        for r in 0..<repeats {
            let round = "\(workdir)/round-\(r)"
            try fm.createDirectory(atPath: round, withIntermediateDirectories: true)
            if let layout = image.ociLayout {
                let opened = try ImageLayout(opening: layout)
                let img = try opened.image(tag: image.tag)
                for d in drivers {
                    let status = StorageDrivers.probe(d)
                    guard status.works else { add(d, kind: "container", full: false, reason: status.reason); continue }
                    progress("clone: \(count) container clones on \(d)")
                    for c in try containerClones(driver: d, image: img, layout: opened, store: "\(round)/\(d)") {
                        add(d, kind: "container", full: false, bytes: c.bytes, seconds: c.seconds)
                    }
                    try? fm.removeItem(atPath: "\(round)/\(d)")
                }
                if let rootfs = image.bundleRootfs, fm.fileExists(atPath: rootfs) {
                    progress("clone: full copy of the container root")
                    let c = try fullCopy(root: rootfs, to: "\(round)/full-root")
                    add("full copy of the root (cp -a --sparse)", kind: "container", full: true, bytes: c.bytes, seconds: c.seconds)
                }
            }
            if let disk = image.flattenedDisk {
                progress("clone: \(count) qcow2 overlays")
                for c in try vmClones(disk: disk, folder: "\(round)/vm") {
                    add("qcow2 overlay", kind: "vm", full: false, bytes: c.bytes, seconds: c.seconds)
                }
                progress("clone: full copy of the VM disk")
                let c = try fullCopy(disk: disk, to: "\(round)/full.qcow2")
                add("full copy (standalone qcow2)", kind: "vm", full: true, bytes: c.bytes, seconds: c.seconds)
            }
            try? fm.removeItem(atPath: round)
        }
        let rows = order.map { k -> Row in
            let s = samples[k]!
            return Row(kind: s.kind, storage: k, available: s.reason == nil || !s.bytes.isEmpty, reason: s.bytes.isEmpty ? s.reason : nil,
                       bytes: Summary(s.bytes), milliseconds: Summary(s.ms), fullCopy: s.full)
        }
        return Result(recipe: image.report.recipe, image: image.folder, count: count, repeats: repeats,
                      imageUncompressedBytes: image.report.totals.imageUncompressedBytes,
                      vmFlattenedAllocatedBytes: image.report.totals.vmFlattenedAllocatedBytes, rows: rows, provenance: .current())
    }

    struct Clone {
        var bytes: UInt64
        var seconds: Double
    }

    /// `count` clones up at once on one driver; released and removed before returning.
    func containerClones(driver name: String, image img: ImageLayout.Image, layout: ImageLayout, store: String) throws -> [Clone] {
        let driver = try StorageDrivers.open(name, store: store)
        var ids: [String] = []
        defer {
            for id in ids { try? driver.remove(id) }
            try? driver.close()
        }
        let top = try DriverImport.importImage(img, from: layout, into: driver).last
        let config = img.config.config ?? ContainerConfig()
        var clones: [Clone] = []
        for i in 0..<count {
            let id = "clone-\(i)"
            let bundle = "\(store)/bundles/\(id)"
            let start = Date()
            ids.append(id)
            let root = try driver.prepare(id, parent: top)
            try FileManager.default.createDirectory(atPath: bundle, withIntermediateDirectories: true)
            try RuntimeBundle.writeConfig(at: bundle, root: root, config: config, hostname: id)
            let seconds = Date().timeIntervalSince(start)
            clones.append(Clone(bytes: try driver.writableBytes(id) + DiskUsage.allocatedBytes(bundle), seconds: seconds))
        }
        return clones
    }

    func vmClones(disk: String, folder: String) throws -> [Clone] {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let backing = URL(fileURLWithPath: disk).standardizedFileURL.path
        var clones: [Clone] = []
        for i in 0..<count {
            let path = "\(folder)/clone-\(i).qcow2"
            let start = Date()
            try QcowImage.create(path: path, options: Qcow2CreateOptions(virtualSize: 0, backingFile: backing, backingFormat: "qcow2")).close()
            clones.append(Clone(bytes: try DiskUsage.allocatedBytes(path), seconds: Date().timeIntervalSince(start)))
        }
        return clones
    }

    func fullCopy(root: String, to dst: String) throws -> Clone {
        let start = Date()
        try Command.check("copying \(root)", ["cp", "-a", "--sparse=always", root, dst])
        let seconds = Date().timeIntervalSince(start)
        return Clone(bytes: try DiskUsage.allocatedBytes(dst), seconds: seconds)
    }

    func fullCopy(disk: String, to dst: String) throws -> Clone {
        let start = Date()
        _ = try Qcow2Converter.convert(source: try QcowImage(path: disk), to: dst, options: Qcow2ConvertOptions())
        let seconds = Date().timeIntervalSince(start)
        return Clone(bytes: try DiskUsage.allocatedBytes(dst), seconds: seconds)
    }
}
