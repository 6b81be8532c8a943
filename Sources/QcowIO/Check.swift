/// Refcount consistency of one qcow2 image, counted as `qemu-img check` counts it: every cluster
/// that metadata references is counted, and the count is compared with the stored refcount.
/// A stored count above the references is a leak; below it, or a malformed reference, is a
/// corruption.
public struct CheckResult: Codable, Equatable, Sendable {
    public var filename: String
    public var corruptions: Int = 0
    public var leaks: Int = 0
    /// Parts the check could not judge.
    public var checkErrors: Int = 0
    public var imageEndOffset: UInt64 = 0
    /// Guest clusters of the virtual size, and those this image allocates.
    public var totalClusters: UInt64 = 0
    public var allocatedClusters: UInt64 = 0
    public var compressedClusters: UInt64 = 0
    /// Allocated guest clusters not placed right after the previous one.
    public var fragmentedClusters: UInt64 = 0
    public var messages: [String] = []

    /// `qemu-img check` exit status: 0 clean, 1 not completed, 2 corrupt, 3 leaks only.
    public var exitCode: Int32 {
        if checkErrors > 0 { return 1 }
        if corruptions > 0 { return 2 }
        if leaks > 0 { return 3 }
        return 0
    }
}

extension QcowImage {
    /// Counts every reference that metadata holds (header, active and snapshot L1/L2 tables and
    /// data, snapshot table, refcount table and blocks) and compares the counts with the stored
    /// refcounts.
    public func check(maxMessages: Int = 100) throws -> CheckResult {
        var c = try ReferenceCount(image: self, maxMessages: maxMessages)
        c.count(0, c.cs, "header")
        try c.countMapping(l1Offset: header.l1TableOffset, l1Size: Int(header.l1Size), active: true, label: "active")
        for (i, s) in snapshots.enumerated() {
            try c.countMapping(l1Offset: s.l1TableOffset, l1Size: Int(s.l1Size), active: false, label: "snapshot \(i)")
        }
        try c.countSnapshotTable()
        if header.autoclearFeatures & 1 != 0 {
            c.result.checkErrors += 1
            c.note("persistent dirty bitmaps are not checked")
        }
        c.countRefcountStructures()
        c.compareWithStored()
        return c.finished()
    }
}

/// One check under way: the references counted so far per host cluster, and the result.
struct ReferenceCount {
    let image: QcowImage
    let cs: UInt64
    let fileSize: UInt64
    let maxMessages: Int
    /// References per host cluster of the file.
    var refs: [UInt32]
    var result: CheckResult

    init(image: QcowImage, maxMessages: Int) throws {
        self.image = image
        self.maxMessages = maxMessages
        cs = UInt64(image.clusterSize)
        fileSize = try image.file.size()
        refs = [UInt32](repeating: 0, count: Int((fileSize + cs - 1) / cs))
        result = CheckResult(filename: image.path)
    }

    var nbClusters: Int { refs.count }

    mutating func note(_ m: String) { if result.messages.count < maxMessages { result.messages.append(m) } }
    mutating func corrupt(_ m: String) { result.corruptions += 1; note("ERROR " + m) }

    /// Counts one reference to each cluster that `[offset, offset+length)` touches.
    mutating func count(_ offset: UInt64, _ length: UInt64, _ what: String) {
        guard length > 0 else { return }
        var c = offset / cs
        let end = (offset + length - 1) / cs
        while c <= end {
            if c >= UInt64(nbClusters) {
                corrupt("\(what) at offset \(offset) references cluster \(c) beyond the end of file")
                return
            }
            refs[Int(c)] &+= 1
            c += 1
        }
    }

    // MARK: - Header, L1, L2 and data

    /// Counts an L1 table, its L2 tables and the data they map; for the active one, also the
    /// allocation statistics and the COPIED flags.
    mutating func countMapping(l1Offset: UInt64, l1Size: Int, active: Bool, label: String) throws {
        // A snapshot's L1 table is not validated on open: judge it here, before its offset is
        // used for arithmetic or I/O (QEMU counts a misplaced one as a corruption too).
        if l1Size > 0, l1Offset % cs != 0 || l1Offset > fileSize || UInt64(l1Size) * 8 > fileSize - l1Offset {
            corrupt("\(label) L1 table at offset \(l1Offset) of \(l1Size) entries is not cluster-aligned or runs past the end of file")
            return
        }
        count(l1Offset, UInt64(l1Size) * 8, "\(label) L1 table")
        let table: [UInt64]
        do {
            table = try image.file.readTable(at: l1Offset, entries: l1Size, what: "\(label) L1 table")
        } catch {
            corrupt("\(label) L1 table unreadable: \(error)")
            return
        }
        var lastHost: UInt64 = 0
        for (i1, raw) in table.enumerated() where raw != 0 {
            guard let l2 = countL2Table(L1Entry(raw: raw), index: i1, active: active, label: label) else { continue }
            for (i2, raw2) in l2.enumerated() where raw2 != 0 {
                countL2Entry(L2Entry(raw: raw2), guest: image.guestOffset(l1Index: i1, l2Index: i2), active: active, lastHost: &lastHost)
            }
        }
    }

    /// Judges and counts the L2 table an L1 entry points at; returns the table when it can be read.
    mutating func countL2Table(_ e1: L1Entry, index i1: Int, active: Bool, label: String) -> [UInt64]? {
        let raw = e1.raw
        if e1.reservedBits != 0 { corrupt("\(label) L1[\(i1)]=0x\(String(raw, radix: 16)) has reserved bits set"); return nil }
        guard e1.isAllocated else { return nil }
        if e1.l2Offset % cs != 0 { corrupt("\(label) L1[\(i1)] L2 offset \(e1.l2Offset) not cluster-aligned"); return nil }
        if e1.l2Offset >= fileSize { corrupt("\(label) L1[\(i1)] L2 offset \(e1.l2Offset) beyond the end of file"); return nil }
        count(e1.l2Offset, cs, "\(label) L2 table")
        // The COPIED flag must be set exactly when the refcount is 1, both ways, as QEMU checks it.
        if active, let stored = try? image.refcount(cluster: e1.l2Offset / cs), (stored == 1) != e1.isCopied {
            corrupt("OFLAG_COPIED L2 cluster: l1_index=\(i1) l1_entry=0x\(String(raw, radix: 16)) refcount=\(stored)")
        }
        do {
            return try image.file.readTable(at: e1.l2Offset, entries: image.geometry.l2Entries, what: "L2 table")
        } catch {
            corrupt("\(label) L2 table at \(e1.l2Offset) unreadable")
            return nil
        }
    }

    /// Judges and counts what one L2 entry references.
    mutating func countL2Entry(_ e: L2Entry, guest: UInt64, active: Bool, lastHost: inout UInt64) {
        if e.isCompressed {
            if e.isCopied { corrupt("compressed cluster at guest offset \(guest) has the COPIED flag") }
            let range = e.compressedRange(clusterBits: image.clusterBits)
            count(range.start, range.length, "compressed cluster")
            if active { result.allocatedClusters += 1; result.compressedClusters += 1 }
            return
        }
        if e.raw & L2Entry.standardReservedMask != 0 {
            corrupt("L2 entry 0x\(String(e.raw, radix: 16)) at guest offset \(guest) has reserved bits set")
            return
        }
        let host = e.clusterOffset
        if host == 0 {
            if active && e.isZero { result.allocatedClusters += 1 }
            return
        }
        if host % cs != 0 { corrupt("cluster offset \(host) at guest offset \(guest) not cluster-aligned"); return }
        count(host, cs, "data cluster")
        guard active else { return }
        result.allocatedClusters += 1
        if lastHost != 0 && host != lastHost + cs { result.fragmentedClusters += 1 }
        lastHost = host
        let stored = (try? image.refcount(cluster: host / cs)) ?? 0
        if (stored == 1) != e.isCopied {
            corrupt("OFLAG_COPIED data cluster: l2_entry=0x\(String(e.raw, radix: 16)) refcount=\(stored)")
        }
    }

    // MARK: - Snapshots

    /// Counts the snapshot table: the sum of its entries, each padded to eight bytes.
    mutating func countSnapshotTable() throws {
        let h = image.header
        guard h.snapshotCount > 0 else { return }
        var length: UInt64 = 0
        var at = h.snapshotsOffset
        for _ in 0..<h.snapshotCount {
            let fixed = try image.file.readExactly(40, at: at, what: "snapshot entry")
            let n = UInt64(40 + Int(fixed.be32(36)) + Int(fixed.be16(12)) + Int(fixed.be16(14)) + 7) / 8 * 8
            length += n
            at += n
        }
        count(h.snapshotsOffset, length, "snapshot table")
    }

    // MARK: - Refcount structures

    /// Counts the refcount table and the refcount blocks it points at.
    mutating func countRefcountStructures() {
        let h = image.header
        count(h.refcountTableOffset, UInt64(h.refcountTableClusters) * cs, "refcount table")
        for (i, raw) in image.refcounts.table.enumerated() where raw != 0 {
            let e = RefcountTableEntry(raw: raw)
            if e.reservedBits != 0 { corrupt("refcount table[\(i)]=0x\(String(raw, radix: 16)) has reserved bits set"); continue }
            if e.blockOffset % cs != 0 { corrupt("refcount block \(i) offset \(e.blockOffset) not cluster-aligned"); continue }
            if e.blockOffset >= fileSize { corrupt("refcount block \(i) at \(e.blockOffset) is beyond the end of file"); continue }
            count(e.blockOffset, cs, "refcount block")
        }
    }

    // MARK: - Comparison

    /// Compares each cluster's references with its stored refcount: more stored is a leak,
    /// fewer a corruption.
    mutating func compareWithStored() {
        for c in 0..<nbClusters {
            let stored: UInt64
            do { stored = try image.refcount(cluster: UInt64(c)) } catch {
                corrupt("cannot read the refcount of cluster \(c): \(error)")
                continue
            }
            classify(cluster: c, stored: stored, computed: UInt64(refs[c]))
        }
    }

    mutating func classify(cluster c: Int, stored: UInt64, computed: UInt64) {
        if stored < computed {
            corrupt("cluster \(c) refcount=\(stored) reference=\(computed)")
        } else if stored > computed {
            result.leaks += 1
            note("Leaked cluster \(c) refcount=\(stored) reference=\(computed)")
        }
    }

    /// The result, with the image's size figures.
    func finished() -> CheckResult {
        var r = result
        r.totalClusters = image.geometry.guestClusters
        r.imageEndOffset = UInt64(nbClusters) * cs
        if let last = refs.lastIndex(where: { $0 != 0 }) { r.imageEndOffset = UInt64(last + 1) * cs }
        return r
    }
}
