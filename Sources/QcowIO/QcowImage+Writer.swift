/// Guest writes: cluster allocation, copy-on-write and the metadata updates, in an order that
/// leaves at most leaked clusters when interrupted: a new cluster's refcount is written before
/// the cluster is used; data is written before the L2 entry that points at it; a new L2 table is
/// written before the L1 entry; old clusters are released only after nothing points at them.
/// (`Refcounts` keeps the same order for its own blocks and table.)
extension QcowImage {
    /// Writes guest bytes. Partial clusters are completed from what the guest reads there now
    /// (the backing chain, a compressed cluster, zeros).
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard file.writable else { throw QcowError.readOnly(path: path, reason: "opened read-only") }
        try checkRange(offset, data.count)
        var done = 0
        while done < data.count {
            let guest = offset + UInt64(done)
            let inCluster = geometry.offsetInCluster(guest)
            let n = min(data.count - done, clusterSize - inCluster)
            try writeCluster(UnsafeRawBufferPointer(rebasing: data[done..<(done + n)]), guest: guest, inCluster: inCluster)
            done += n
        }
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    private func writeCluster(_ data: UnsafeRawBufferPointer, guest: UInt64, inCluster: Int) throws {
        let clusterStart = guest - UInt64(inCluster)
        let old = try l2Entry(forGuest: guest)
        if !old.isCompressed, !old.isZero, old.clusterOffset != 0, old.isCopied {
            try file.write(data, at: old.clusterOffset + UInt64(inCluster))
            return
        }
        var cluster = [UInt8](repeating: 0, count: clusterSize)
        if data.count < clusterSize {
            let valid = Int(min(UInt64(clusterSize), virtualSize - clusterStart))
            try cluster.withUnsafeMutableBytes { try read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<valid]), at: clusterStart) }
        }
        cluster.withUnsafeMutableBytes { UnsafeMutableRawBufferPointer(rebasing: $0[inCluster..<(inCluster + data.count)]).copyMemory(from: data) }
        let host: UInt64
        if !old.isCompressed, old.isZero, old.clusterOffset != 0, old.isCopied {
            host = old.clusterOffset // a preallocated zero cluster that we own
        } else {
            host = try allocateClusters(1)
        }
        try file.write(cluster, at: host)
        try setL2Entry(forGuest: guest, .standard(offset: host, copied: true))
        if host != old.clusterOffset { try release(old) }
    }

    /// Marks a guest range as reading zeros (version 3 zero clusters); whole clusters only.
    public func writeZeroes(at offset: UInt64, length: UInt64) throws {
        guard offset % UInt64(clusterSize) == 0, length % UInt64(clusterSize) == 0 || offset + length == virtualSize else {
            throw QcowError.invalidArgument("\(path): zeroing needs whole clusters")
        }
        var guest = offset
        while guest < offset + length {
            let old = try l2Entry(forGuest: guest)
            if !(old.isZero && old.clusterOffset == 0) {
                try setL2Entry(forGuest: guest, .standard(offset: 0, copied: false, zero: true))
                try release(old)
            }
            guest += UInt64(clusterSize)
        }
    }

    /// Drops the references an old L2 entry held (after it has been replaced on disk).
    private func release(_ old: L2Entry) throws {
        if old.isCompressed {
            let r = old.compressedRange(clusterBits: clusterBits)
            var c = r.start >> UInt64(clusterBits)
            while c << UInt64(clusterBits) < r.start + r.length {
                try adjustRefcount(cluster: c, by: -1)
                c += 1
            }
        } else if old.clusterOffset != 0 {
            try adjustRefcount(cluster: old.clusterOffset >> UInt64(clusterBits), by: -1)
        }
    }

    private func setL2Entry(forGuest guest: UInt64, _ entry: L2Entry) throws {
        let i1 = geometry.l1Index(guest), i2 = geometry.l2Index(guest)
        let e1 = try checkedL1Entry(i1)
        if e1.isAllocated && e1.isCopied {
            var t = try l2Table(at: e1.l2Offset, l1Index: i1)
            t[i2] = entry.raw
            try file.writeBE64(entry.raw, at: e1.l2Offset + UInt64(i2 * 8))
            l2Cache.put(e1.l2Offset, t, bytes: clusterSize)
            return
        }
        // A new L2 table, or a private copy of a shared one.
        var t = e1.isAllocated ? try l2Table(at: e1.l2Offset, l1Index: i1) : [UInt64](repeating: 0, count: geometry.l2Entries)
        t[i2] = entry.raw
        let host = try allocateClusters(1)
        try file.writeTable(t, at: host)
        l2Cache.put(host, t, bytes: clusterSize)
        try setL1Entry(i1, L1Entry(l2Offset: host, copied: true))
        if e1.isAllocated { try adjustRefcount(cluster: e1.l2Offset >> UInt64(clusterBits), by: -1) }
    }

    private func setL1Entry(_ index: Int, _ entry: L1Entry) throws {
        try file.writeBE64(entry.raw, at: header.l1TableOffset + UInt64(index * 8))
        l1[index] = entry.raw
    }

    /// Reserves `count` contiguous clusters at the end of the file, counts them, and returns the
    /// host offset of the first. The file is extended first, so a count never points past its end.
    func allocateClusters(_ count: Int) throws -> UInt64 {
        let first = try space.take(count, in: file)
        for c in first..<(first + UInt64(count)) { try adjustRefcount(cluster: c, by: 1) }
        return first << UInt64(clusterBits)
    }
}
