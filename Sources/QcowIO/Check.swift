import Host
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
    public func check(maxMessages: Int = 100) throws -> CheckResult {
        var r = CheckResult(filename: path)
        let cs = UInt64(clusterSize)
        let fileSize = try file.size()
        let nbClusters = Int((fileSize + cs - 1) / cs)
        var refs = [UInt32](repeating: 0, count: nbClusters)
        func note(_ m: String) { if r.messages.count < maxMessages { r.messages.append(m) } }
        func corrupt(_ m: String) { r.corruptions += 1; note("ERROR " + m) }
        func count(_ offset: UInt64, _ length: UInt64, _ what: String) {
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
        count(0, cs, "header")

        func walk(l1Offset: UInt64, l1Size: Int, active: Bool, label: String) throws {
            // A snapshot's L1 table is not validated on open: judge it here, before its offset is
            // used for arithmetic or I/O (QEMU counts a misplaced one as a corruption too).
            if l1Size > 0, l1Offset % cs != 0 || l1Offset > fileSize || UInt64(l1Size) * 8 > fileSize - l1Offset {
                corrupt("\(label) L1 table at offset \(l1Offset) of \(l1Size) entries is not cluster-aligned or runs past the end of file")
                return
            }
            count(l1Offset, UInt64(l1Size) * 8, "\(label) L1 table")
            let table: [UInt64]
            do {
                table = try QcowImage.readTable(file, offset: l1Offset, entries: l1Size, what: "\(label) L1 table")
            } catch {
                corrupt("\(label) L1 table unreadable: \(error)")
                return
            }
            var lastHost: UInt64 = 0
            for (i1, raw) in table.enumerated() {
                let e1 = L1Entry(raw: raw)
                guard raw != 0 else { continue }
                if e1.reservedBits != 0 { corrupt("\(label) L1[\(i1)]=0x\(String(raw, radix: 16)) has reserved bits set"); continue }
                guard e1.isAllocated else { continue }
                if e1.l2Offset % cs != 0 { corrupt("\(label) L1[\(i1)] L2 offset \(e1.l2Offset) not cluster-aligned"); continue }
                if e1.l2Offset >= fileSize { corrupt("\(label) L1[\(i1)] L2 offset \(e1.l2Offset) beyond the end of file"); continue }
                count(e1.l2Offset, cs, "\(label) L2 table")
                // The COPIED flag must be set exactly when the refcount is 1, both ways, as QEMU checks it.
                if active, let stored = try? refcount(cluster: e1.l2Offset / cs), (stored == 1) != e1.isCopied {
                    corrupt("OFLAG_COPIED L2 cluster: l1_index=\(i1) l1_entry=0x\(String(raw, radix: 16)) refcount=\(stored)")
                }
                let l2: [UInt64]
                do {
                    l2 = try QcowImage.readTable(file, offset: e1.l2Offset, entries: geometry.l2Entries, what: "L2 table")
                } catch {
                    corrupt("\(label) L2 table at \(e1.l2Offset) unreadable")
                    continue
                }
                for (i2, raw2) in l2.enumerated() where raw2 != 0 {
                    let e = L2Entry(raw: raw2)
                    let guest = (UInt64(i1) << UInt64(clusterBits + geometry.l2Bits)) | (UInt64(i2) << UInt64(clusterBits))
                    if e.isCompressed {
                        if e.isCopied { corrupt("compressed cluster at guest offset \(guest) has the COPIED flag") }
                        let range = e.compressedRange(clusterBits: clusterBits)
                        count(range.start, range.length, "compressed cluster")
                        if active { r.allocatedClusters += 1; r.compressedClusters += 1 }
                        continue
                    }
                    if raw2 & L2Entry.standardReservedMask != 0 {
                        corrupt("L2 entry 0x\(String(raw2, radix: 16)) at guest offset \(guest) has reserved bits set")
                        continue
                    }
                    let host = e.clusterOffset
                    if host == 0 {
                        if active && e.isZero { r.allocatedClusters += 1 }
                        continue
                    }
                    if host % cs != 0 { corrupt("cluster offset \(host) at guest offset \(guest) not cluster-aligned"); continue }
                    count(host, cs, "data cluster")
                    if active {
                        r.allocatedClusters += 1
                        if lastHost != 0 && host != lastHost + cs { r.fragmentedClusters += 1 }
                        lastHost = host
                        let stored = (try? refcount(cluster: host / cs)) ?? 0
                        if (stored == 1) != e.isCopied {
                            corrupt("OFLAG_COPIED data cluster: l2_entry=0x\(String(raw2, radix: 16)) refcount=\(stored)")
                        }
                    }
                }
            }
        }
        try walk(l1Offset: header.l1TableOffset, l1Size: Int(header.l1Size), active: true, label: "active")
        for (i, s) in snapshots.enumerated() {
            try walk(l1Offset: s.l1TableOffset, l1Size: Int(s.l1Size), active: false, label: "snapshot \(i)")
        }
        if header.snapshotCount > 0 {
            // The table's length: the sum of its entries, each padded to eight bytes.
            var length: UInt64 = 0
            var at = header.snapshotsOffset
            for _ in 0..<header.snapshotCount {
                let fixed = try file.readExactly(40, at: at, what: "snapshot entry")
                let n = UInt64(40 + Int(fixed.be32(36)) + Int(fixed.be16(12)) + Int(fixed.be16(14)) + 7) / 8 * 8
                length += n
                at += n
            }
            count(header.snapshotsOffset, length, "snapshot table")
        }
        if header.autoclearFeatures & 1 != 0 {
            r.checkErrors += 1
            note("persistent dirty bitmaps are not checked")
        }
        count(header.refcountTableOffset, UInt64(header.refcountTableClusters) * cs, "refcount table")
        for (i, raw) in refcountTable.enumerated() where raw != 0 {
            let e = RefcountTableEntry(raw: raw)
            if e.reservedBits != 0 { corrupt("refcount table[\(i)]=0x\(String(raw, radix: 16)) has reserved bits set"); continue }
            if e.blockOffset % cs != 0 { corrupt("refcount block \(i) offset \(e.blockOffset) not cluster-aligned"); continue }
            if e.blockOffset >= fileSize { corrupt("refcount block \(i) at \(e.blockOffset) is beyond the end of file"); continue }
            count(e.blockOffset, cs, "refcount block")
        }
        for c in 0..<nbClusters {
            let stored: UInt64
            do { stored = try refcount(cluster: UInt64(c)) } catch {
                corrupt("cannot read the refcount of cluster \(c): \(error)")
                continue
            }
            let computed = UInt64(refs[c])
            if stored < computed {
                corrupt("cluster \(c) refcount=\(stored) reference=\(computed)")
            } else if stored > computed {
                r.leaks += 1
                note("Leaked cluster \(c) refcount=\(stored) reference=\(computed)")
            }
        }
        r.totalClusters = geometry.guestClusters
        r.imageEndOffset = UInt64(nbClusters) * cs
        if let last = refs.lastIndex(where: { $0 != 0 }) { r.imageEndOffset = UInt64(last + 1) * cs }
        return r
    }
}
