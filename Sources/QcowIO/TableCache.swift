/// A small cache of metadata tables by host offset, bounded in bytes (entries evicted oldest
/// first). One instance per kind of table: `L2Cache` for L2 tables, the refcount block cache in
/// `Refcounts`.
struct TableCache<Table> {
    private var tables: [UInt64: (table: Table, bytes: Int)] = [:]
    private var order: [UInt64] = []
    private var bytes = 0
    static var limit: Int { 32 * 1024 * 1024 }

    func get(_ k: UInt64) -> Table? { tables[k]?.table }

    /// Stores `t`, which takes `size` bytes, under host offset `k`.
    mutating func put(_ k: UInt64, _ t: Table, bytes size: Int) {
        if let old = tables.updateValue((t, size), forKey: k) {
            bytes += size - old.bytes
        } else {
            admit(k, size)
        }
    }

    private mutating func admit(_ k: UInt64, _ size: Int) {
        order.append(k)
        bytes += size
        while bytes > TableCache.limit, order.count > 1 {
            let victim = order.removeFirst()
            if let t = tables.removeValue(forKey: victim) { bytes -= t.bytes }
        }
    }
}

/// L2 tables by their host offset, each `clusterSize` bytes.
typealias L2Cache = TableCache<[UInt64]>
