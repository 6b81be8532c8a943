#if canImport(Glibc)
import Glibc
import Host
#endif

/// An open qcow2 image: its header, its tables and its backing chain. Reads go through L1/L2
/// to data, zero or compressed clusters and fall through to the backing image; writes allocate
/// clusters with copy-on-write and keep refcounts on disk ahead of the references to them.
///
/// Not thread-safe: one image, one user at a time.
public final class QcowImage: DiskImage, @unchecked Sendable {
    public let path: String
    public let file: BlockFile
    public private(set) var header: Qcow2Header
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
    private(set) var l1: [UInt64]
    private var l2Cache = TableCache()
    private(set) var refcountTable: [UInt64]
    private var refcountCache = TableCache()
    /// Set while a grown refcount table is being prepared and not yet on disk.
    private var refcountTablePending = false
    /// First cluster index past everything allocated: new clusters are appended here.
    private var endCluster: UInt64
    private var lastCompressed: (offset: UInt64, data: [UInt8])?

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
        let extStart = Int(h.headerLength)
        // Extensions exist only in version 3; in version 2 they may follow the 72-byte header too.
        let exts = try Qcow2HeaderExtension.parseAll(headerCluster, start: extStart, path: path)
        extensions = exts
        if exts.contains(where: { $0.type == Qcow2.ExtensionType.fullDiskEncryption.rawValue }) {
            throw QcowError.encrypted(path: path, method: h.cryptMethod)
        }
        featureNames = exts.first { $0.type == Qcow2.ExtensionType.featureNameTable.rawValue }
            .map { Qcow2FeatureName.parseTable($0.data) } ?? []
        backingFormat = exts.first { $0.type == Qcow2.ExtensionType.backingFormat.rawValue }
            .map { String(decoding: $0.data, as: UTF8.self) }
        if h.backingFileOffset != 0 {
            let start = Int(h.backingFileOffset), end = start + Int(h.backingFileSize)
            guard end <= headerCluster.count else {
                throw QcowError.truncated(path: path, what: "backing file name", offset: h.backingFileOffset, needed: Int(h.backingFileSize), fileSize: fileSize)
            }
            backingFileName = String(decoding: headerCluster[start..<end], as: UTF8.self)
        } else {
            backingFileName = nil
        }
        snapshots = try Qcow2Snapshot.readTable(file, header: h)

        l1 = try QcowImage.readTable(file, offset: h.l1TableOffset, entries: Int(h.l1Size), what: "L1 table")
        refcountTable = try QcowImage.readTable(file, offset: h.refcountTableOffset,
                                                entries: Int(h.refcountTableClusters) * h.clusterSize / 8, what: "refcount table")
        endCluster = (fileSize + UInt64(h.clusterSize) - 1) >> UInt64(h.clusterBits)

        if let name = backingFileName {
            let resolved = QcowImage.resolve(backing: name, relativeTo: path)
            let me = QcowImage.canonical(path)
            let target = QcowImage.canonical(resolved)
            guard target != me, !seen.contains(target) else { throw QcowError.backingLoop(path: path, backing: name) }
            guard depth + 1 < Qcow2.maxBackingChainDepth else { throw QcowError.backingChainTooDeep(path: path, depth: Qcow2.maxBackingChainDepth) }
            guard access(resolved, F_OK) == 0 else { throw QcowError.backingNotFound(path: path, backing: name) }
            backing = try DiskImages.open(resolved, format: backingFormat, writable: false, seen: seen.union([me]), depth: depth + 1)
        } else {
            backing = nil
        }
        if writable {
            if findings.dirty { throw QcowError.readOnly(path: path, reason: "the dirty bit is set (refcounts may be stale); run qemu-img check -r all") }
            if findings.corrupt { throw QcowError.readOnly(path: path, reason: "the image is marked corrupt") }
            if !snapshots.isEmpty { throw QcowError.readOnly(path: path, reason: "the image has \(snapshots.count) internal snapshots") }
            if h.version < 3 { throw QcowError.readOnly(path: path, reason: "version 2 images are read only here") }
        }
    }

    static func readTable(_ file: BlockFile, offset: UInt64, entries: Int, what: String) throws -> [UInt64] {
        guard entries > 0 else { return [] }
        let bytes = try file.readExactly(entries * 8, at: offset, what: what)
        return (0..<entries).map { bytes.be64($0 * 8) }
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

    // MARK: - Table access

    func l2Table(at offset: UInt64, l1Index: Int) throws -> [UInt64] {
        if let t = l2Cache.get(offset) { return t }
        let t = try QcowImage.readTable(file, offset: offset, entries: geometry.l2Entries, what: "L2 table of L1[\(l1Index)]")
        l2Cache.put(offset, t, bytes: clusterSize)
        return t
    }

    func checkedL1Entry(_ index: Int) throws -> L1Entry {
        let e = L1Entry(raw: l1[index])
        if e.reservedBits != 0 {
            throw QcowError.invalidEntry(path: path, table: "L1", index: UInt64(index), value: e.raw, reason: "reserved bits set")
        }
        if e.l2Offset % UInt64(clusterSize) != 0 {
            throw QcowError.invalidEntry(path: path, table: "L1", index: UInt64(index), value: e.raw, reason: "L2 table offset not cluster-aligned")
        }
        if e.l2Offset >= endCluster << UInt64(clusterBits) {
            throw QcowError.invalidEntry(path: path, table: "L1", index: UInt64(index), value: e.raw, reason: "L2 table beyond the end of file")
        }
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
        let fileEnd = endCluster << UInt64(clusterBits)
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

    // MARK: - Reading

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        guard offset <= virtualSize, UInt64(buffer.count) <= virtualSize - offset else {
            throw QcowError.outOfRange(path: path, offset: offset, length: buffer.count, virtualSize: virtualSize)
        }
        var done = 0
        // Contiguous host runs are read with one call.
        var run: (host: UInt64, dst: Int, count: Int)?
        func flush() throws {
            if let r = run {
                let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[r.dst..<(r.dst + r.count)])
                let n = try file.read(into: dst, at: r.host)
                if n < r.count {
                    throw QcowError.truncated(path: path, what: "data cluster", offset: r.host, needed: r.count, fileSize: try file.size())
                }
                run = nil
            }
        }
        while done < buffer.count {
            let guest = offset + UInt64(done)
            let inCluster = geometry.offsetInCluster(guest)
            let n = min(buffer.count - done, clusterSize - inCluster)
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)])
            let e = try l2Entry(forGuest: guest)
            if !e.isCompressed, !e.isZero, e.clusterOffset != 0 {
                let host = e.clusterOffset + UInt64(inCluster)
                if let r = run, r.host + UInt64(r.count) == host, r.dst + r.count == done {
                    run!.count += n
                } else {
                    try flush()
                    run = (host, done, n)
                }
            } else {
                try flush()
                if e.isCompressed {
                    let cluster = try decompressed(e, guestOffset: guest)
                    cluster.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[inCluster..<(inCluster + n)])) }
                } else if e.isZero {
                    dst.initializeMemory(as: UInt8.self, repeating: 0)
                } else {
                    try readBacking(into: dst, at: guest)
                }
            }
            done += n
        }
        try flush()
    }

    /// Reads what the backing chain holds at `offset` (zeros past its end or without one).
    func readBacking(into dst: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        guard let b = backing, offset < b.virtualSize else {
            dst.initializeMemory(as: UInt8.self, repeating: 0)
            return
        }
        let inside = Int(min(UInt64(dst.count), b.virtualSize - offset))
        try b.read(into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<inside]), at: offset)
        if inside < dst.count {
            UnsafeMutableRawBufferPointer(rebasing: dst[inside...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    func decompressed(_ e: L2Entry, guestOffset: UInt64) throws -> [UInt8] {
        let start = e.compressedOffset(clusterBits: clusterBits)
        if let c = lastCompressed, c.offset == start { return c.data }
        let range = e.compressedRange(clusterBits: clusterBits)
        let length = Int(range.start + range.length - start)
        var input = [UInt8](repeating: 0, count: length)
        // The last compressed cluster of a file may end before its last sector does.
        _ = try input.withUnsafeMutableBytes { try file.read(into: $0, at: start) }
        var out = [UInt8](repeating: 0, count: clusterSize)
        let ok = input.withUnsafeBytes { i in out.withUnsafeMutableBytes { o in Deflate.decompress(i, into: o) } }
        guard ok else { throw QcowError.decompressionFailed(path: path, guestOffset: guestOffset, hostOffset: start) }
        lastCompressed = (start, out)
        return out
    }

    public func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        var kind: BlockStatus.Kind?
        var compressed = false
        var covered: UInt64 = 0
        while covered < length {
            let guest = offset + covered
            var n = min(length - covered, UInt64(clusterSize - geometry.offsetInCluster(guest)))
            let i1 = geometry.l1Index(guest)
            if try i1 >= l1.count || !checkedL1Entry(i1).isAllocated {
                // A whole L2 range with no table: one step, not one per cluster.
                let rangeEnd = (UInt64(i1) + 1) * geometry.bytesPerL2
                n = min(length - covered, rangeEnd - guest)
            }
            let e = try l2Entry(forGuest: guest)
            var k: BlockStatus.Kind
            var c = false
            if e.isZero {
                k = .zero(depth: 0)
            } else if e.isCompressed || e.clusterOffset != 0 {
                k = .data(depth: 0)
                c = e.isCompressed
            } else if let b = backing, guest < b.virtualSize {
                let s = try b.blockStatus(at: guest, length: min(n, b.virtualSize - guest))
                switch s.kind {
                case let .data(d): k = .data(depth: d + 1)
                case let .zero(d): k = .zero(depth: d + 1)
                case .unallocated: k = .unallocated
                }
                c = s.compressed
                // The backing image may report a shorter run than this cluster.
                if s.length < n {
                    if kind == nil { return BlockStatus(kind: k, length: s.length, compressed: c) }
                    if kind == k && compressed == c { covered += s.length }
                    break
                }
            } else {
                k = .unallocated
            }
            if let prev = kind, prev != k || compressed != c { break }
            kind = k
            compressed = c
            covered += n
        }
        return BlockStatus(kind: kind ?? .unallocated, length: covered, compressed: compressed)
    }

    // MARK: - Writing

    /// Writes guest bytes. Partial clusters are completed from what the guest reads there now
    /// (the backing chain, a compressed cluster, zeros).
    ///
    /// Ordering, so that an interrupted writer leaves at most leaked clusters: a new cluster's
    /// refcount is written before the cluster is used; data is written before the L2 entry that
    /// points at it; a new L2 table is written before the L1 entry; a new refcount block before
    /// the refcount table entry; old clusters are released only after nothing points at them.
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws {
        guard file.writable else { throw QcowError.readOnly(path: path, reason: "opened read-only") }
        guard offset <= virtualSize, UInt64(data.count) <= virtualSize - offset else {
            throw QcowError.outOfRange(path: path, offset: offset, length: data.count, virtualSize: virtualSize)
        }
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
            var b = [UInt8](repeating: 0, count: 8)
            b.putBE64(entry.raw, at: 0)
            try file.write(b, at: e1.l2Offset + UInt64(i2 * 8))
            l2Cache.put(e1.l2Offset, t, bytes: clusterSize)
            return
        }
        // A new L2 table, or a private copy of a shared one.
        var t = e1.isAllocated ? try l2Table(at: e1.l2Offset, l1Index: i1) : [UInt64](repeating: 0, count: geometry.l2Entries)
        t[i2] = entry.raw
        let host = try allocateClusters(1)
        try writeTable(t, at: host)
        l2Cache.put(host, t, bytes: clusterSize)
        try setL1Entry(i1, L1Entry(l2Offset: host, copied: true))
        if e1.isAllocated { try adjustRefcount(cluster: e1.l2Offset >> UInt64(clusterBits), by: -1) }
    }

    private func setL1Entry(_ index: Int, _ entry: L1Entry) throws {
        var b = [UInt8](repeating: 0, count: 8)
        b.putBE64(entry.raw, at: 0)
        try file.write(b, at: header.l1TableOffset + UInt64(index * 8))
        l1[index] = entry.raw
    }

    private func writeTable(_ t: [UInt64], at offset: UInt64) throws {
        var b = [UInt8](repeating: 0, count: t.count * 8)
        for (i, v) in t.enumerated() { b.putBE64(v, at: i * 8) }
        try file.write(b, at: offset)
    }

    // MARK: - Cluster allocation and refcounts

    /// Reserves `count` contiguous clusters at the end of the file, counts them, and returns the
    /// host offset of the first. The file is extended first, so a count never points past its end.
    func allocateClusters(_ count: Int) throws -> UInt64 {
        let first = endCluster
        endCluster += UInt64(count)
        try file.truncate(to: max(try file.size(), endCluster << UInt64(clusterBits)))
        for c in first..<(first + UInt64(count)) { try adjustRefcount(cluster: c, by: 1) }
        return first << UInt64(clusterBits)
    }

    func refcount(cluster: UInt64) throws -> UInt64 {
        let perBlock = UInt64(geometry.refcountsPerBlock)
        let ti = Int(cluster / perBlock)
        guard ti < refcountTable.count else { return 0 }
        let entry = RefcountTableEntry(raw: refcountTable[ti])
        guard entry.blockOffset != 0 else { return 0 }
        return try refcountBlock(at: entry.blockOffset, tableIndex: ti)[Int(cluster % perBlock)]
    }

    private func refcountBlock(at offset: UInt64, tableIndex: Int) throws -> RefcountBlock {
        if let b = refcountCache.getBytes(offset) { return RefcountBlock(bytes: b, refcountOrder: geometry.refcountOrder) }
        if offset % UInt64(clusterSize) != 0 || offset >= endCluster << UInt64(clusterBits) {
            throw QcowError.invalidEntry(path: path, table: "refcount table", index: UInt64(tableIndex), value: offset, reason: "refcount block not cluster-aligned or beyond the end of file")
        }
        let bytes = try file.readExactly(clusterSize, at: offset, what: "refcount block \(tableIndex)")
        refcountCache.putBytes(offset, bytes)
        return RefcountBlock(bytes: bytes, refcountOrder: geometry.refcountOrder)
    }

    private func adjustRefcount(cluster: UInt64, by delta: Int) throws {
        let perBlock = UInt64(geometry.refcountsPerBlock)
        let ti = Int(cluster / perBlock)
        if ti >= refcountTable.count {
            guard delta > 0 else { throw QcowError.invalidArgument("\(path): freeing cluster \(cluster) that has no refcount") }
            try growRefcountTable(toCover: ti)
        }
        if refcountTable[ti] == 0 {
            guard delta > 0 else { throw QcowError.invalidArgument("\(path): freeing cluster \(cluster) that has no refcount block") }
            try addRefcountBlock(tableIndex: ti)
        }
        let blockOffset = RefcountTableEntry(raw: refcountTable[ti]).blockOffset
        var block = try refcountBlock(at: blockOffset, tableIndex: ti)
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
        refcountCache.putBytes(blockOffset, block.bytes)
        // Write back the bytes that hold this count.
        let bits = 1 << geometry.refcountOrder
        let first = i * bits / 8, last = ((i + 1) * bits - 1) / 8
        try block.bytes.withUnsafeBytes {
            try file.write(UnsafeRawBufferPointer(rebasing: $0[first...last]), at: blockOffset + UInt64(first))
        }
    }

    /// Allocates the refcount block for table index `ti`. It is placed at the end of the file;
    /// when that cluster is within its own range the block counts itself.
    private func addRefcountBlock(tableIndex ti: Int) throws {
        let perBlock = UInt64(geometry.refcountsPerBlock)
        let c = endCluster
        endCluster += 1
        try file.truncate(to: max(try file.size(), endCluster << UInt64(clusterBits)))
        var block = RefcountBlock(clusterSize: clusterSize, refcountOrder: geometry.refcountOrder)
        if c / perBlock == UInt64(ti) {
            block[Int(c % perBlock)] = 1
        } else {
            try adjustRefcount(cluster: c, by: 1)
        }
        let offset = c << UInt64(clusterBits)
        try file.write(block.bytes, at: offset)
        refcountCache.putBytes(offset, block.bytes)
        refcountTable[ti] = offset
        if !refcountTablePending {
            var b = [UInt8](repeating: 0, count: 8)
            b.putBE64(offset, at: 0)
            try file.write(b, at: header.refcountTableOffset + UInt64(ti * 8))
        }
    }

    /// Moves the refcount table to a larger one at the end of the file. The new table and the
    /// blocks that count it are written before the header points at it; the old table's clusters
    /// are released after.
    private func growRefcountTable(toCover ti: Int) throws {
        let entriesPerCluster = clusterSize / 8
        let oldClusters = Int(header.refcountTableClusters)
        var newClusters = max(oldClusters * 2, (ti + 1 + entriesPerCluster - 1) / entriesPerCluster + 1)
        newClusters = min(newClusters, Qcow2.maxRefcountTableBytes / clusterSize)
        guard newClusters * entriesPerCluster > ti, newClusters > oldClusters else {
            throw QcowError.invalidArgument("\(path): refcount table would exceed \(Qcow2.maxRefcountTableBytes) bytes")
        }
        let oldOffset = header.refcountTableOffset
        let first = endCluster
        endCluster += UInt64(newClusters)
        try file.truncate(to: max(try file.size(), endCluster << UInt64(clusterBits)))
        refcountTable += [UInt64](repeating: 0, count: newClusters * entriesPerCluster - refcountTable.count)
        refcountTablePending = true
        defer { refcountTablePending = false }
        for c in first..<(first + UInt64(newClusters)) { try adjustRefcount(cluster: c, by: 1) }
        try writeTable(refcountTable, at: first << UInt64(clusterBits))
        var b = [UInt8](repeating: 0, count: 12)
        b.putBE64(first << UInt64(clusterBits), at: 0)
        b.putBE32(UInt32(newClusters), at: 8)
        try file.write(b, at: 48)
        header.refcountTableOffset = first << UInt64(clusterBits)
        header.refcountTableClusters = UInt32(newClusters)
        refcountTablePending = false
        for k in 0..<UInt64(oldClusters) { try adjustRefcount(cluster: (oldOffset >> UInt64(clusterBits)) + k, by: -1) }
    }

    public func sync() throws { try file.sync() }
}

/// A small cache of tables by host offset, bounded in bytes (entries evicted oldest first).
struct TableCache {
    private var tables: [UInt64: [UInt64]] = [:]
    private var blocks: [UInt64: [UInt8]] = [:]
    private var order: [UInt64] = []
    private var bytes = 0
    static let limit = 32 * 1024 * 1024

    func get(_ k: UInt64) -> [UInt64]? { tables[k] }
    func getBytes(_ k: UInt64) -> [UInt8]? { blocks[k] }

    mutating func put(_ k: UInt64, _ t: [UInt64], bytes size: Int) {
        if tables.updateValue(t, forKey: k) == nil { admit(k, size) }
    }

    mutating func putBytes(_ k: UInt64, _ b: [UInt8]) {
        if blocks.updateValue(b, forKey: k) == nil { admit(k, b.count) }
    }

    private mutating func admit(_ k: UInt64, _ size: Int) {
        order.append(k)
        bytes += size
        while bytes > TableCache.limit, order.count > 1 {
            let victim = order.removeFirst()
            if let t = tables.removeValue(forKey: victim) { bytes -= t.count * 8 }
            if let b = blocks.removeValue(forKey: victim) { bytes -= b.count }
        }
    }
}
