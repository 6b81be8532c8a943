/// Judges a parsed header against the format's rules, the file's size and this library's limits.
/// Kept apart from parsing: parsing reads fields, validation decides whether they can be trusted.
public enum Qcow2Validator {
    /// What validation found that does not stop reading.
    public struct Findings: Equatable, Sendable {
        /// The image was not closed cleanly (lazy refcounts): refcounts may be stale.
        public var dirty = false
        /// QEMU marked the image corrupt.
        public var corrupt = false
    }

    public static func validate(_ h: Qcow2Header, fileSize: UInt64, path: String) throws -> Findings {
        guard (Qcow2.minClusterBits...Qcow2.maxClusterBits).contains(Int(h.clusterBits)) else {
            throw bad(path, "cluster_bits", UInt64(h.clusterBits), "must be 9 to 21 (512 B to 2 MiB clusters)")
        }
        let clusterSize = UInt64(h.clusterSize)
        if h.cryptMethod != 0 { throw QcowError.encrypted(path: path, method: h.cryptMethod) }
        if h.version == 3 {
            guard h.refcountOrder <= 6 else { throw bad(path, "refcount_order", UInt64(h.refcountOrder), "must be 0 to 6") }
            guard UInt64(h.headerLength) <= clusterSize else {
                throw bad(path, "header_length", UInt64(h.headerLength), "exceeds the cluster size \(clusterSize)")
            }
        }
        try checkFeatures(h, path: path)
        try checkLayout(h, fileSize: fileSize, path: path)
        return Findings(dirty: h.incompatibleFeatures.contains(.dirty), corrupt: h.incompatibleFeatures.contains(.corrupt))
    }

    /// Refuses feature bits and compression types this library does not read.
    static func checkFeatures(_ h: Qcow2Header, path: String) throws {
        let unknown = h.incompatibleFeatures.subtracting(.known)
        if !unknown.isEmpty {
            throw QcowError.unsupportedFeature(path: path, feature: "unknown incompatible feature bits 0x\(String(unknown.rawValue, radix: 16))")
        }
        if h.incompatibleFeatures.contains(.externalDataFile) {
            throw QcowError.unsupportedFeature(path: path, feature: "external data file (incompatible bit 2)")
        }
        if h.incompatibleFeatures.contains(.extendedL2) {
            throw QcowError.unsupportedFeature(path: path, feature: "extended L2 entries (incompatible bit 4)")
        }
        if h.incompatibleFeatures.contains(.compressionType) != (h.compressionType != 0) {
            throw bad(path, "compression_type", UInt64(h.compressionType), "disagrees with incompatible bit 3")
        }
        if h.compressionType != 0 {
            if h.compressionType == Qcow2.CompressionType.zstd.rawValue {
                throw QcowError.unsupportedFeature(path: path, feature: "zstd compression (compression_type=1); only deflate is read")
            }
            throw bad(path, "compression_type", UInt64(h.compressionType), "unknown compression type")
        }
    }

    /// Judges the sizes and places of the tables and the backing file name against the file.
    static func checkLayout(_ h: Qcow2Header, fileSize: UInt64, path: String) throws {
        let clusterSize = UInt64(h.clusterSize)
        let geometry = Qcow2Geometry(clusterBits: Int(h.clusterBits), refcountOrder: Int(h.refcountOrder), virtualSize: h.size)
        guard h.size <= UInt64(1) << 62 else { throw bad(path, "size", h.size, "virtual size beyond 2^62 bytes") }
        guard UInt64(h.l1Size) * 8 <= UInt64(Qcow2.maxL1Bytes) else {
            throw bad(path, "l1_size", UInt64(h.l1Size), "L1 table of \(UInt64(h.l1Size) * 8) bytes exceeds the \(Qcow2.maxL1Bytes)-byte limit")
        }
        guard UInt64(h.l1Size) >= geometry.l1Entries else {
            throw bad(path, "l1_size", UInt64(h.l1Size), "too small to map the virtual size \(h.size) (needs \(geometry.l1Entries))")
        }
        if h.l1Size > 0 {
            try checkTable("l1_table_offset", offset: h.l1TableOffset, bytes: UInt64(h.l1Size) * 8, clusterSize: clusterSize, fileSize: fileSize, path: path)
        }
        guard h.refcountTableClusters > 0 else { throw bad(path, "refcount_table_clusters", 0, "an image needs a refcount table") }
        let rtBytes = UInt64(h.refcountTableClusters) * clusterSize
        guard rtBytes <= UInt64(Qcow2.maxRefcountTableBytes) else {
            throw bad(path, "refcount_table_clusters", UInt64(h.refcountTableClusters), "refcount table of \(rtBytes) bytes exceeds the \(Qcow2.maxRefcountTableBytes)-byte limit")
        }
        try checkTable("refcount_table_offset", offset: h.refcountTableOffset, bytes: rtBytes, clusterSize: clusterSize, fileSize: fileSize, path: path)
        guard h.snapshotCount <= UInt32(Qcow2.maxSnapshots) else {
            throw bad(path, "nb_snapshots", UInt64(h.snapshotCount), "more than \(Qcow2.maxSnapshots) snapshots")
        }
        if h.snapshotCount > 0 {
            // Each entry takes at least 40 bytes.
            try checkTable("snapshots_offset", offset: h.snapshotsOffset, bytes: UInt64(h.snapshotCount) * 40, clusterSize: clusterSize, fileSize: fileSize, path: path)
        }
        if h.backingFileOffset != 0 {
            guard h.backingFileSize > 0, h.backingFileSize <= UInt32(Qcow2.maxBackingFileNameLength) else {
                throw bad(path, "backing_file_size", UInt64(h.backingFileSize), "must be 1 to \(Qcow2.maxBackingFileNameLength)")
            }
            guard h.backingFileOffset + UInt64(h.backingFileSize) <= clusterSize else {
                throw bad(path, "backing_file_offset", h.backingFileOffset, "backing file name runs past the header cluster")
            }
        }
    }

    private static func bad(_ path: String, _ field: String, _ value: UInt64, _ reason: String) -> QcowError {
        .invalidField(path: path, field: field, value: value, reason: reason)
    }

    static func checkTable(_ field: String, offset: UInt64, bytes: UInt64, clusterSize: UInt64, fileSize: UInt64, path: String) throws {
        guard offset % clusterSize == 0 else {
            throw QcowError.invalidField(path: path, field: field, value: offset, reason: "not aligned to the cluster size \(clusterSize)")
        }
        guard offset > 0 else {
            throw QcowError.invalidField(path: path, field: field, value: offset, reason: "overlaps the header cluster")
        }
        guard offset <= fileSize, bytes <= fileSize - offset else {
            throw QcowError.invalidField(path: path, field: field, value: offset, reason: "table of \(bytes) bytes ends beyond the end of file (\(fileSize) bytes)")
        }
    }
}
