/// The refcount table and the refcount blocks it points at, with the blocks' cache: the one
/// owner of the image's refcounts and of where the table lies (the header's
/// refcount_table_offset and refcount_table_clusters follow it).
///
/// Ordering, so that an interrupted writer leaves at most leaked clusters: a new refcount block
/// is written before the table entry that points at it; a grown table and the blocks that count
/// it are written before the header points at it, and the old table is released after.
struct Refcounts {
    let file: BlockFile
    let geometry: Qcow2Geometry
    /// The refcount table, in memory (bounded by `Qcow2.maxRefcountTableBytes`).
    private(set) var table: [UInt64]
    private(set) var tableOffset: UInt64
    private(set) var tableClusters: UInt32
    private var blocks = TableCache<[UInt8]>()
    /// Set while a grown refcount table is being prepared and not yet on disk.
    private var tablePending = false

    init(file: BlockFile, header h: Qcow2Header, geometry: Qcow2Geometry) throws {
        self.file = file
        self.geometry = geometry
        tableOffset = h.refcountTableOffset
        tableClusters = h.refcountTableClusters
        table = try file.readTable(at: h.refcountTableOffset, entries: Int(h.refcountTableClusters) * h.clusterSize / 8,
                                   what: "refcount table")
    }

    private var path: String { file.path }
    private var clusterSize: Int { geometry.clusterSize }
    private var perBlock: UInt64 { UInt64(geometry.refcountsPerBlock) }

    /// The stored refcount of host cluster `cluster` (0 where no block covers it).
    mutating func refcount(of cluster: UInt64, space: ClusterAllocator) throws -> UInt64 {
        let ti = Int(cluster / perBlock)
        guard ti < table.count else { return 0 }
        let entry = RefcountTableEntry(raw: table[ti])
        guard entry.blockOffset != 0 else { return 0 }
        return try block(at: entry.blockOffset, tableIndex: ti, space: space)[Int(cluster % perBlock)]
    }

    private mutating func block(at offset: UInt64, tableIndex: Int, space: ClusterAllocator) throws -> RefcountBlock {
        if let b = blocks.get(offset) { return RefcountBlock(bytes: b, refcountOrder: geometry.refcountOrder) }
        if offset % UInt64(clusterSize) != 0 || offset >= space.endOffset {
            throw QcowError.invalidEntry(path: path, table: "refcount table", index: UInt64(tableIndex), value: offset, reason: "refcount block not cluster-aligned or beyond the end of file")
        }
        let bytes = try file.readExactly(clusterSize, at: offset, what: "refcount block \(tableIndex)")
        blocks.put(offset, bytes, bytes: bytes.count)
        return RefcountBlock(bytes: bytes, refcountOrder: geometry.refcountOrder)
    }

    /// Adds `delta` to the refcount of `cluster` and writes the bytes that hold it. A count that
    /// needs a new block or a larger table gets them from `space` first.
    mutating func adjust(cluster: UInt64, by delta: Int, space: inout ClusterAllocator) throws {
        let ti = Int(cluster / perBlock)
        if ti >= table.count {
            guard delta > 0 else { throw QcowError.invalidArgument("\(path): freeing cluster \(cluster) that has no refcount") }
            try growTable(toCover: ti, space: &space)
        }
        if table[ti] == 0 {
            guard delta > 0 else { throw QcowError.invalidArgument("\(path): freeing cluster \(cluster) that has no refcount block") }
            try addBlock(tableIndex: ti, space: &space)
        }
        let blockOffset = RefcountTableEntry(raw: table[ti]).blockOffset
        var block = try block(at: blockOffset, tableIndex: ti, space: space)
        let i = Int(cluster % perBlock)
        let old = block[i]
        if delta < 0 && old < UInt64(-delta) {
            throw QcowError.invalidEntry(path: path, table: "refcount", index: cluster, value: old, reason: "refcount would drop below zero")
        }
        let new = delta < 0 ? old - UInt64(-delta) : old + UInt64(delta)
        guard new <= block.maxValue else {
            throw QcowError.invalidEntry(path: path, table: "refcount", index: cluster, value: old, reason: "refcount overflow at width \(1 << geometry.refcountOrder)")
        }
        block[i] = new
        blocks.put(blockOffset, block.bytes, bytes: block.bytes.count)
        // Write back the bytes that hold this count.
        let bits = 1 << geometry.refcountOrder
        let first = i * bits / 8, last = ((i + 1) * bits - 1) / 8
        try block.bytes.withUnsafeBytes {
            try file.write(UnsafeRawBufferPointer(rebasing: $0[first...last]), at: blockOffset + UInt64(first))
        }
    }

    /// Allocates the refcount block for table index `ti`. It is placed at the end of the file;
    /// when that cluster is within its own range the block counts itself.
    private mutating func addBlock(tableIndex ti: Int, space: inout ClusterAllocator) throws {
        let c = try space.take(1, in: file)
        var block = RefcountBlock(clusterSize: clusterSize, refcountOrder: geometry.refcountOrder)
        if c / perBlock == UInt64(ti) {
            block[Int(c % perBlock)] = 1
        } else {
            try adjust(cluster: c, by: 1, space: &space)
        }
        let offset = c << UInt64(geometry.clusterBits)
        try file.write(block.bytes, at: offset)
        blocks.put(offset, block.bytes, bytes: block.bytes.count)
        table[ti] = offset
        if !tablePending {
            try file.writeBE64(offset, at: tableOffset + UInt64(ti * 8))
        }
    }

    /// Moves the refcount table to a larger one at the end of the file. The new table and the
    /// blocks that count it are written before the header points at it; the old table's clusters
    /// are released after.
    private mutating func growTable(toCover ti: Int, space: inout ClusterAllocator) throws {
        let entriesPerCluster = clusterSize / 8
        let oldClusters = Int(tableClusters)
        var newClusters = max(oldClusters * 2, (ti + 1 + entriesPerCluster - 1) / entriesPerCluster + 1)
        newClusters = min(newClusters, Qcow2.maxRefcountTableBytes / clusterSize)
        guard newClusters * entriesPerCluster > ti, newClusters > oldClusters else {
            throw QcowError.invalidArgument("\(path): refcount table would exceed \(Qcow2.maxRefcountTableBytes) bytes")
        }
        let oldOffset = tableOffset
        let first = try space.take(newClusters, in: file)
        let newOffset = first << UInt64(geometry.clusterBits)
        table += [UInt64](repeating: 0, count: newClusters * entriesPerCluster - table.count)
        tablePending = true
        defer { tablePending = false }
        for c in first..<(first + UInt64(newClusters)) { try adjust(cluster: c, by: 1, space: &space) }
        try file.writeTable(table, at: newOffset)
        var b = [UInt8](repeating: 0, count: 12)
        b.putBE64(newOffset, at: 0)
        b.putBE32(UInt32(newClusters), at: 8)
        try file.write(b, at: 48)
        tableOffset = newOffset
        tableClusters = UInt32(newClusters)
        tablePending = false
        let oldFirst = oldOffset >> UInt64(geometry.clusterBits)
        for k in 0..<UInt64(oldClusters) { try adjust(cluster: oldFirst + k, by: -1, space: &space) }
    }
}

extension Refcounts {
    /// Writes the refcounts of a new image: the table at cluster `tableStart`, pointing at
    /// `blocks` refcount blocks from cluster `blocksStart`, which count host clusters `0..<end`
    /// with `count(cluster)` (and the rest 0).
    static func writeNew(_ file: BlockFile, geometry g: Qcow2Geometry, tableStart: UInt64, tableClusters: UInt64,
                         blocksStart: UInt64, blocks: UInt64, end: UInt64, count: (UInt64) -> UInt64) throws {
        let bits = UInt64(g.clusterBits), perBlock = UInt64(g.refcountsPerBlock)
        var table = [UInt8](repeating: 0, count: Int(tableClusters) * g.clusterSize)
        for b in 0..<blocks {
            table.putBE64((blocksStart + b) << bits, at: Int(b) * 8)
            var block = RefcountBlock(clusterSize: g.clusterSize, refcountOrder: g.refcountOrder)
            for i in 0..<perBlock where b * perBlock + i < end { block[Int(i)] = count(b * perBlock + i) }
            try file.write(block.bytes, at: (blocksStart + b) << bits)
        }
        try file.write(table, at: tableStart << bits)
    }
}

extension QcowImage {
    /// The stored refcount of host cluster `cluster`.
    func refcount(cluster: UInt64) throws -> UInt64 {
        try refcounts.refcount(of: cluster, space: space)
    }

    /// Changes a refcount on disk; the header follows a refcount table that moved.
    func adjustRefcount(cluster: UInt64, by delta: Int) throws {
        defer {
            header.refcountTableOffset = refcounts.tableOffset
            header.refcountTableClusters = refcounts.tableClusters
        }
        try refcounts.adjust(cluster: cluster, by: delta, space: &space)
    }
}
