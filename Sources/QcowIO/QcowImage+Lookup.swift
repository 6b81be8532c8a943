/// L1/L2 lookup: from a guest offset to its L2 entry, every entry judged before it is used.
extension QcowImage {
    func l2Table(at offset: UInt64, l1Index: Int) throws -> [UInt64] {
        if let t = l2Cache.get(offset) { return t }
        let t = try file.readTable(at: offset, entries: geometry.l2Entries, what: "L2 table of L1[\(l1Index)]")
        l2Cache.put(offset, t, bytes: clusterSize)
        return t
    }

    func checkedL1Entry(_ index: Int) throws -> L1Entry {
        let e = L1Entry(raw: l1[index])
        func bad(_ reason: String) -> QcowError {
            .invalidEntry(path: path, table: "L1", index: UInt64(index), value: e.raw, reason: reason)
        }
        if e.reservedBits != 0 { throw bad("reserved bits set") }
        if e.l2Offset % UInt64(clusterSize) != 0 { throw bad("L2 table offset not cluster-aligned") }
        if e.l2Offset >= space.endOffset { throw bad("L2 table beyond the end of file") }
        return e
    }

    /// The L2 entry for a guest offset (unallocated when its L2 table is).
    public func l2Entry(forGuest offset: UInt64) throws -> L2Entry {
        let i1 = geometry.l1Index(offset)
        guard i1 < l1.count else { return .unallocated }
        let e1 = try checkedL1Entry(i1)
        guard e1.isAllocated else { return .unallocated }
        let t = try l2Table(at: e1.l2Offset, l1Index: i1)
        let i2 = geometry.l2Index(offset)
        let e = L2Entry(raw: t[i2])
        try check(e, guestOffset: offset, l1Index: i1, l2Index: i2)
        return e
    }

    func check(_ e: L2Entry, guestOffset: UInt64, l1Index: Int, l2Index: Int) throws {
        func bad(_ reason: String) -> QcowError {
            .invalidEntry(path: path, table: "L2 of L1[\(l1Index)]", index: UInt64(l2Index), value: e.raw, reason: reason)
        }
        let fileEnd = space.endOffset
        if e.isCompressed {
            if e.isCopied { throw bad("compressed entry has the COPIED bit") }
            if e.compressedOffset(clusterBits: clusterBits) >= fileEnd { throw bad("compressed data beyond the end of file") }
            return
        }
        if e.raw & L2Entry.standardReservedMask != 0 { throw bad("reserved bits set") }
        if e.isZero && header.version < 3 { throw bad("zero flag in a version 2 image") }
        if e.clusterOffset % UInt64(clusterSize) != 0 { throw bad("data offset not cluster-aligned") }
        if e.clusterOffset >= fileEnd { throw bad("data cluster beyond the end of file") }
    }

    /// The guest offset that L1 index `i1` and L2 index `i2` map.
    func guestOffset(l1Index i1: Int, l2Index i2: Int) -> UInt64 {
        (UInt64(i1) << UInt64(clusterBits + geometry.l2Bits)) | (UInt64(i2) << UInt64(clusterBits))
    }
}
