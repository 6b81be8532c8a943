/// Options for a new qcow2 image.
public struct Qcow2CreateOptions: Equatable, Sendable {
    public var virtualSize: UInt64
    public var clusterSize: Int = 1 << Qcow2.defaultClusterBits
    public var refcountBits: Int = 16
    /// Stored as given in the header; resolved relative to the new image's folder when read.
    public var backingFile: String?
    /// "qcow2" or "raw"; recorded in the backing format extension.
    public var backingFormat: String?

    public init(virtualSize: UInt64, clusterSize: Int = 1 << Qcow2.defaultClusterBits, refcountBits: Int = 16,
                backingFile: String? = nil, backingFormat: String? = nil) {
        self.virtualSize = virtualSize
        self.clusterSize = clusterSize
        self.refcountBits = refcountBits
        self.backingFile = backingFile
        self.backingFormat = backingFormat
    }

    public func validated() throws -> (clusterBits: Int, refcountOrder: Int) {
        guard clusterSize.nonzeroBitCount == 1,
              (Qcow2.minClusterBits...Qcow2.maxClusterBits).contains(clusterSize.trailingZeroBitCount) else {
            throw QcowError.invalidArgument("cluster size \(clusterSize) must be a power of two from 512 B to 2 MiB")
        }
        guard refcountBits > 0, refcountBits.nonzeroBitCount == 1, refcountBits <= 64 else {
            throw QcowError.invalidArgument("refcount bits \(refcountBits) must be a power of two from 1 to 64")
        }
        if let f = backingFormat, f != "qcow2", f != "raw" {
            throw QcowError.invalidArgument("backing format '\(f)' must be qcow2 or raw")
        }
        if let b = backingFile, b.utf8.count > Qcow2.maxBackingFileNameLength || b.isEmpty {
            throw QcowError.invalidArgument("backing file name must be 1 to \(Qcow2.maxBackingFileNameLength) bytes")
        }
        return (clusterSize.trailingZeroBitCount, refcountBits.trailingZeroBitCount)
    }
}

/// The header cluster's layout: header, extensions, backing file name.
struct HeaderCluster {
    /// Builds cluster 0. The feature name table is left out when it would not fit.
    static func build(_ h: inout Qcow2Header, backingFile: String?, backingFormat: String?) throws -> [UInt8] {
        var exts: [Qcow2HeaderExtension] = []
        if let f = backingFormat {
            exts.append(.init(type: Qcow2.ExtensionType.backingFormat.rawValue, data: Array(f.utf8)))
        }
        let name = backingFile.map { Array($0.utf8) } ?? []
        let withTable = exts + [.init(type: Qcow2.ExtensionType.featureNameTable.rawValue,
                                      data: Qcow2FeatureName.serializeTable(Qcow2FeatureName.standard))]
        let fixed = Int(h.headerLength)
        var extBytes = Qcow2HeaderExtension.serializeAll(withTable)
        if fixed + extBytes.count + name.count > h.clusterSize {
            extBytes = Qcow2HeaderExtension.serializeAll(exts)
        }
        guard fixed + extBytes.count + name.count <= h.clusterSize else {
            throw QcowError.invalidArgument("backing file name of \(name.count) bytes does not fit in a \(h.clusterSize)-byte header cluster")
        }
        if !name.isEmpty {
            h.backingFileOffset = UInt64(fixed + extBytes.count)
            h.backingFileSize = UInt32(name.count)
        }
        var cluster = h.serialized() + extBytes + name
        cluster += [UInt8](repeating: 0, count: h.clusterSize - cluster.count)
        return cluster
    }
}

extension QcowImage {
    /// Creates an empty image (every cluster unallocated; reads fall through to the backing file)
    /// and returns it opened for writing.
    ///
    /// Layout: header cluster, refcount table, refcount blocks, L1 table. Only metadata is
    /// allocated; data clusters come as they are written.
    @discardableResult
    public static func create(path: String, options o: Qcow2CreateOptions) throws -> QcowImage {
        let (clusterBits, refcountOrder) = try o.validated()
        var virtualSize = o.virtualSize
        if virtualSize == 0, let b = o.backingFile {
            let resolved = resolve(backing: b, relativeTo: path)
            virtualSize = try DiskImages.open(resolved, format: o.backingFormat).virtualSize
        }
        let g = Qcow2Geometry(clusterBits: clusterBits, refcountOrder: refcountOrder, virtualSize: virtualSize)
        guard g.l1Entries * 8 <= UInt64(Qcow2.maxL1Bytes) else {
            throw QcowError.invalidArgument("virtual size \(virtualSize) needs an L1 table beyond \(Qcow2.maxL1Bytes) bytes at cluster size \(g.clusterSize); use larger clusters")
        }
        let l1Clusters = max(1, g.clusters(forBytes: g.l1Entries * 8))
        let meta = g.refcountMetadata(forClusters: 1 + l1Clusters)
        let tableStart: UInt64 = 1
        let blocksStart = tableStart + meta.tableClusters
        let l1Start = blocksStart + meta.blocks
        let total = l1Start + l1Clusters

        var h = Qcow2Header()
        h.clusterBits = UInt32(clusterBits)
        h.size = virtualSize
        h.refcountOrder = UInt32(refcountOrder)
        h.l1Size = UInt32(g.l1Entries)
        h.l1TableOffset = l1Start << UInt64(clusterBits)
        h.refcountTableOffset = tableStart << UInt64(clusterBits)
        h.refcountTableClusters = UInt32(meta.tableClusters)
        let headerCluster = try HeaderCluster.build(&h, backingFile: o.backingFile, backingFormat: o.backingFormat)

        let file = try BlockFile(path: path, mode: .create)
        try file.truncate(to: total << UInt64(clusterBits))
        // Refcount table and blocks: every cluster of the layout counted once.
        try Refcounts.writeNew(file, geometry: g, tableStart: tableStart, tableClusters: meta.tableClusters,
                               blocksStart: blocksStart, blocks: meta.blocks, end: total) { _ in 1 }
        // The L1 table is already zero (the file was extended with zeros); the header goes last.
        try file.write(headerCluster, at: 0)
        try file.close()
        return try QcowImage(path: path, writable: true)
    }
}
