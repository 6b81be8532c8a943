#if canImport(Glibc)
import Glibc
#endif

/// An open qcow2 image: its header, its tables and its backing chain. Reads go through L1/L2
/// to data, zero or compressed clusters and fall through to the backing image; writes allocate
/// clusters with copy-on-write and keep refcounts on disk ahead of the references to them.
///
/// The concerns live in their own files: opening and validating (here), L1/L2 lookup
/// (`QcowImage+Lookup`), guest reads (`QcowImage+Reader`), guest writes (`QcowImage+Writer`),
/// refcounts (`Refcounts`), the caches (`TableCache`) and the end of file (`ClusterAllocator`).
///
/// Not thread-safe, and so not `Sendable`: its L1 table, caches, refcounts and end of file
/// change on reads and writes with no lock. One image, one user at a time.
public final class QcowImage: DiskImage {
    public let path: String
    public let file: BlockFile
    public internal(set) var header: Qcow2Header
    public let geometry: Qcow2Geometry
    public let extensions: [Qcow2HeaderExtension]
    public let backingFileName: String?
    public let backingFormat: String?
    public let featureNames: [Qcow2FeatureName]
    public let snapshots: [Qcow2Snapshot]
    public let findings: Qcow2Validator.Findings
    public let backing: DiskImage?

    public var formatName: String { "qcow2" }
    public var virtualSize: UInt64 { header.size }
    public var backingImage: DiskImage? { backing }
    public var clusterSize: Int { geometry.clusterSize }
    var clusterBits: Int { geometry.clusterBits }

    /// The L1 table, in memory (bounded by `Qcow2.maxL1Bytes`).
    var l1: [UInt64]
    var l2Cache = L2Cache()
    var refcounts: Refcounts
    /// Where new clusters are appended.
    var space: ClusterAllocator
    /// The last compressed cluster read, inflated.
    var lastCompressed: (offset: UInt64, data: [UInt8])?

    public convenience init(path: String, writable: Bool = false) throws {
        try self.init(path: path, writable: writable, seen: [], depth: 0)
    }

    init(path: String, writable: Bool, seen: Set<String>, depth: Int) throws {
        self.path = path
        file = try BlockFile(path: path, mode: writable ? .readWrite : .readOnly)
        let fileSize = try file.size()
        // The header cluster: its size is only known from the header, so read the largest
        // possible header first, then the cluster.
        let head = try file.readExactly(Int(min(fileSize, UInt64(Qcow2.v3HeaderLengthWithCompressionType))), at: 0, what: "header")
        let h = try Qcow2Header.parse(head, path: path)
        findings = try Qcow2Validator.validate(h, fileSize: fileSize, path: path)
        header = h
        geometry = Qcow2Geometry(clusterBits: Int(h.clusterBits), refcountOrder: Int(h.refcountOrder), virtualSize: h.size)
        let headerCluster = try file.readExactly(Int(min(fileSize, UInt64(h.clusterSize))), at: 0, what: "header cluster")
        // Extensions exist only in version 3; in version 2 they may follow the 72-byte header too.
        let exts = try Qcow2HeaderExtension.parseAll(headerCluster, start: Int(h.headerLength), path: path)
        extensions = exts
        if exts.contains(where: { $0.type == Qcow2.ExtensionType.fullDiskEncryption.rawValue }) {
            throw QcowError.encrypted(path: path, method: h.cryptMethod)
        }
        featureNames = exts.first { $0.type == Qcow2.ExtensionType.featureNameTable.rawValue }
            .map { Qcow2FeatureName.parseTable($0.data) } ?? []
        let format = exts.first { $0.type == Qcow2.ExtensionType.backingFormat.rawValue }
            .map { String(decoding: $0.data, as: UTF8.self) }
        backingFormat = format
        let name = try QcowImage.readBackingFileName(headerCluster, header: h, fileSize: fileSize, path: path)
        backingFileName = name
        snapshots = try Qcow2Snapshot.readTable(file, header: h)

        l1 = try file.readTable(at: h.l1TableOffset, entries: Int(h.l1Size), what: "L1 table")
        refcounts = try Refcounts(file: file, header: h, geometry: geometry)
        space = ClusterAllocator(fileSize: fileSize, clusterBits: Int(h.clusterBits))
        backing = try name.map { try QcowImage.openBacking($0, format: format, of: path, seen: seen, depth: depth) }
        if writable { try refuseWriting() }
    }

    /// The backing file name the header cluster holds, if any.
    static func readBackingFileName(_ headerCluster: [UInt8], header h: Qcow2Header, fileSize: UInt64, path: String) throws -> String? {
        guard h.backingFileOffset != 0 else { return nil }
        let start = Int(h.backingFileOffset), end = start + Int(h.backingFileSize)
        guard end <= headerCluster.count else {
            throw QcowError.truncated(path: path, what: "backing file name", offset: h.backingFileOffset, needed: Int(h.backingFileSize), fileSize: fileSize)
        }
        return String(decoding: headerCluster[start..<end], as: UTF8.self)
    }

    /// Opens the backing image `name` of the image at `path`, refusing loops and chains too deep.
    static func openBacking(_ name: String, format: String?, of path: String, seen: Set<String>, depth: Int) throws -> DiskImage {
        let resolved = resolve(backing: name, relativeTo: path)
        let me = canonical(path)
        let target = canonical(resolved)
        guard target != me, !seen.contains(target) else { throw QcowError.backingLoop(path: path, backing: name) }
        guard depth + 1 < Qcow2.maxBackingChainDepth else { throw QcowError.backingChainTooDeep(path: path, depth: Qcow2.maxBackingChainDepth) }
        guard access(resolved, F_OK) == 0 else { throw QcowError.backingNotFound(path: path, backing: name) }
        return try DiskImages.open(resolved, format: format, writable: false, seen: seen.union([me]), depth: depth + 1)
    }

    /// Throws when the image must not be written: its refcounts or its snapshots could not be kept right.
    private func refuseWriting() throws {
        if findings.dirty { throw QcowError.readOnly(path: path, reason: "the dirty bit is set (refcounts may be stale); run qemu-img check -r all") }
        if findings.corrupt { throw QcowError.readOnly(path: path, reason: "the image is marked corrupt") }
        if !snapshots.isEmpty { throw QcowError.readOnly(path: path, reason: "the image has \(snapshots.count) internal snapshots") }
        if header.version < 3 { throw QcowError.readOnly(path: path, reason: "version 2 images are read only here") }
    }

    /// A backing file name is relative to the directory of the image that names it.
    public static func resolve(backing name: String, relativeTo image: String) -> String {
        if name.hasPrefix("/") { return name }
        guard let slash = image.lastIndex(of: "/") else { return name }
        return String(image[...slash]) + name
    }

    static func canonical(_ path: String) -> String {
        guard let p = realpath(path, nil) else { return path }
        defer { free(p) }
        return String(cString: p)
    }

    public func close() throws { try file.close() }

    public func sync() throws { try file.sync() }
}
