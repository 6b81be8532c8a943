import Dispatch
import Foundation
import Host
#if canImport(Glibc)
import Glibc
#endif

public struct Qcow2ConvertOptions: Sendable {
    public var clusterSize: Int = 1 << Qcow2.defaultClusterBits
    public var refcountBits: Int = 16
    /// Store clusters deflate-compressed (where that makes them smaller).
    public var compress = false
    /// Write only the clusters that differ from this image (named in the header as given,
    /// resolved relative to the destination's folder).
    public var backingFile: String?
    public var backingFormat: String?
    /// Compression threads; every core by default.
    public var threads: Int = Processors.count
    /// Guest bytes read per batch.
    public var batchBytes: Int = 8 << 20

    public init(clusterSize: Int = 1 << Qcow2.defaultClusterBits, compress: Bool = false,
                backingFile: String? = nil, backingFormat: String? = nil) {
        self.clusterSize = clusterSize
        self.compress = compress
        self.backingFile = backingFile
        self.backingFormat = backingFormat
    }
}

public struct Qcow2ConvertStats: Codable, Equatable, Sendable {
    public var virtualSize: UInt64 = 0
    public var clusterSize: Int = 0
    /// Guest clusters stored with data (compressed or not).
    public var dataClusters: UInt64 = 0
    public var compressedClusters: UInt64 = 0
    /// Guest clusters left out because they read as zeros.
    public var zeroClustersSkipped: UInt64 = 0
    /// Guest clusters left out because the backing chain holds the same bytes.
    public var sameAsBackingSkipped: UInt64 = 0
    /// Guest clusters marked zero to hide non-zero backing data.
    public var zeroClustersMarked: UInt64 = 0
    public var fileBytes: UInt64 = 0
}

/// Writes a new qcow2 image from any disk image in one sequential pass.
///
/// Everything is appended: the header cluster and L1 first, then data clusters (packed
/// compressed clusters, byte-granular, as QEMU does) with each L2 table written as soon as it is
/// complete, and last the refcount table and blocks, whose counts follow from the layout. Memory
/// stays bounded by a batch, one L2 table, the L1 table and two bytes per compressed host
/// cluster. The image is written to `DST.partial` and renamed when complete.
public enum Qcow2Converter {
    public static func convert(source: DiskImage, to destination: String, options o: Qcow2ConvertOptions,
                               progress: ((_ done: UInt64, _ total: UInt64) -> Void)? = nil) throws -> Qcow2ConvertStats {
        let (clusterBits, refcountOrder) = try Qcow2CreateOptions(
            virtualSize: source.virtualSize, clusterSize: o.clusterSize, refcountBits: o.refcountBits,
            backingFile: o.backingFile, backingFormat: o.backingFormat).validated()
        let backing: DiskImage? = try o.backingFile.map {
            try DiskImages.open(QcowImage.resolve(backing: $0, relativeTo: destination), format: o.backingFormat)
        }
        let partial = destination + ".partial"
        let file = try BlockFile(path: partial, mode: .create)
        do {
            var w = try SequentialWriter(file: file, source: source, backing: backing, options: o,
                                         clusterBits: clusterBits, refcountOrder: refcountOrder)
            let stats = try w.run(progress: progress)
            try file.close()
            if rename(partial, destination) != 0 { throw BlockFile.error(destination, "rename from \(partial)") }
            return stats
        } catch {
            try? file.close()
            unlink(partial)
            throw error
        }
    }
}

struct SequentialWriter {
    let file: BlockFile
    let source: DiskImage
    let backing: DiskImage?
    let o: Qcow2ConvertOptions
    let g: Qcow2Geometry
    var header = Qcow2Header()
    var headerCluster: [UInt8]
    let cs: Int
    let l1Clusters: UInt64

    var l1: [UInt64]
    var l2: [UInt64]
    var l2Index = -1
    var l2Dirty = false
    /// Next free host byte.
    var pos: UInt64
    /// Counts of host clusters touched by compressed clusters, two bytes per host cluster up to
    /// the last one touched (0: not touched, so the cluster counts 1).
    var shared: [UInt16] = []
    /// A host cluster is closed to more compressed data at this count (the refcount width's
    /// maximum, and never beyond what two bytes hold).
    var sharedLimit: UInt64 { min(maxRefcount, UInt64(UInt16.max)) }
    let maxRefcount: UInt64
    var stats = Qcow2ConvertStats()
    /// Compressors for the worker threads.
    let deflaters = DeflaterPool()
    /// Pending output, written with one call when it is contiguous.
    var out: [UInt8] = []
    var outStart: UInt64 = 0

    init(file: BlockFile, source: DiskImage, backing: DiskImage?, options: Qcow2ConvertOptions, clusterBits: Int, refcountOrder: Int) throws {
        self.file = file
        self.source = source
        self.backing = backing
        o = options
        g = Qcow2Geometry(clusterBits: clusterBits, refcountOrder: refcountOrder, virtualSize: source.virtualSize)
        cs = g.clusterSize
        guard g.l1Entries * 8 <= UInt64(Qcow2.maxL1Bytes) else {
            throw QcowError.invalidArgument("virtual size \(g.virtualSize) needs an L1 table beyond \(Qcow2.maxL1Bytes) bytes at cluster size \(cs); use larger clusters")
        }
        l1Clusters = max(1, g.clusters(forBytes: g.l1Entries * 8))
        l1 = [UInt64](repeating: 0, count: Int(g.l1Entries))
        l2 = [UInt64](repeating: 0, count: g.l2Entries)
        maxRefcount = RefcountBlock(clusterSize: cs, refcountOrder: refcountOrder).maxValue
        header.clusterBits = UInt32(clusterBits)
        header.size = g.virtualSize
        header.refcountOrder = UInt32(refcountOrder)
        header.l1Size = UInt32(g.l1Entries)
        header.l1TableOffset = UInt64(cs)
        headerCluster = try HeaderCluster.build(&header, backingFile: options.backingFile, backingFormat: options.backingFormat)
        pos = (1 + l1Clusters) << UInt64(clusterBits)
        stats.virtualSize = g.virtualSize
        stats.clusterSize = cs
    }

    mutating func run(progress: ((UInt64, UInt64) -> Void)?) throws -> Qcow2ConvertStats {
        let total = g.virtualSize
        let batch = max(cs, o.batchBytes / cs * cs)
        var buffer = [UInt8](repeating: 0, count: batch)
        var backingBuffer = [UInt8](repeating: 0, count: backing == nil ? 0 : batch)
        var guest: UInt64 = 0
        while guest < total {
            let length = Int(min(UInt64(batch), total - guest))
            let run = try quietRun(at: guest, length: length)
            if run > 0 {
                stats.zeroClustersSkipped += run / UInt64(cs)
                guest += run
                progress?(guest, total)
                continue
            }
            try read(into: &buffer, backing: &backingBuffer, at: guest, length: length)
            let actions = decide(clusters: (length + cs - 1) / cs, buffer: buffer, backingBuffer: backingBuffer)
            try perform(actions, from: buffer, guest: guest)
            guest += UInt64(length)
            progress?(guest, total)
        }
        return try finish()
    }

    /// Whole clusters from `guest` that read as zeros in both the source and the backing chain,
    /// and so are skipped unread (0 when none).
    func quietRun(at guest: UInt64, length: Int) throws -> UInt64 {
        let s = try source.blockStatus(at: guest, length: UInt64(length))
        guard isQuiet(s) else { return 0 }
        var run = s.length / UInt64(cs) * UInt64(cs)
        if let b = backing, run > 0, guest < b.virtualSize {
            let bs = try b.blockStatus(at: guest, length: min(run, b.virtualSize - guest))
            run = isQuiet(bs) ? min(run, bs.length / UInt64(cs) * UInt64(cs)) : 0
        }
        return run
    }

    /// Reads a batch of the source, and of the backing chain when there is one (zeros past its end).
    func read(into buffer: inout [UInt8], backing backingBuffer: inout [UInt8], at guest: UInt64, length: Int) throws {
        // The last cluster of an image whose size is not a multiple of the cluster is padded with zeros.
        if length % cs != 0 { buffer.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) } }
        try buffer.withUnsafeMutableBytes { try source.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<length]), at: guest) }
        guard let b = backing else { return }
        backingBuffer.withUnsafeMutableBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: 0) }
        if guest < b.virtualSize {
            let n = Int(min(UInt64(length), b.virtualSize - guest))
            try backingBuffer.withUnsafeMutableBytes { try b.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: guest) }
        }
    }

    /// Decides per cluster of a batch, in guest order: skip, mark zero, or store.
    mutating func decide(clusters: Int, buffer: [UInt8], backingBuffer: [UInt8]) -> [Action] {
        var actions: [Action] = []
        buffer.withUnsafeBytes { src in
            backingBuffer.withUnsafeBytes { bak in
                for c in 0..<clusters {
                    let r = (c * cs)..<((c + 1) * cs)
                    let data = UnsafeRawBufferPointer(rebasing: src[r])
                    let zero = data.isAllZero()
                    if backing != nil {
                        let old = UnsafeRawBufferPointer(rebasing: bak[r])
                        if memcmp(data.baseAddress!, old.baseAddress!, cs) == 0 {
                            stats.sameAsBackingSkipped += 1
                        } else {
                            actions.append(zero ? .markZero(c) : .store(c))
                        }
                    } else if zero {
                        stats.zeroClustersSkipped += 1
                    } else {
                        actions.append(.store(c))
                    }
                }
            }
        }
        return actions
    }

    /// A run that reads as zeros without holding data.
    func isQuiet(_ s: BlockStatus) -> Bool {
        if case .data = s.kind { return false }
        return true
    }

    enum Action {
        case store(Int)
        case markZero(Int)
    }

    /// Carries out a batch's actions in guest order; the clusters to store are compressed on
    /// every core first when asked.
    mutating func perform(_ actions: [Action], from buffer: [UInt8], guest: UInt64) throws {
        guard !actions.isEmpty else { return }
        var compressed: [Int: [UInt8]] = [:]
        if o.compress {
            let indices = actions.compactMap { if case let .store(c) = $0 { return c } else { return nil } }
            for (c, z) in zip(indices, Self.compressAll(indices, buffer: buffer, clusterSize: cs, threads: o.threads, deflaters: deflaters)) {
                if let z { compressed[c] = z }
            }
        }
        var run: (first: Int, count: Int, host: UInt64)?
        for a in actions {
            switch a {
            case let .markZero(c):
                try setEntry(guest + UInt64(c * cs), .standard(offset: 0, copied: false, zero: true))
                stats.zeroClustersMarked += 1
            case let .store(c):
                if let z = compressed[c] {
                    // A shared host cluster must not overflow its refcount.
                    if pos % UInt64(cs) != 0, sharedCount(pos >> UInt64(g.clusterBits)) >= sharedLimit { alignToCluster() }
                    // The output buffer pads its gaps with zeros: a direct run must be out first.
                    try writeRun(run, from: buffer)
                    run = nil
                    let host = pos
                    z.withUnsafeBytes { append($0, at: host) }
                    let entry = L2Entry.compressed(offset: host, bytes: z.count, clusterBits: g.clusterBits)
                    let r = entry.compressedRange(clusterBits: g.clusterBits)
                    var hc = r.start >> UInt64(g.clusterBits)
                    while hc << UInt64(g.clusterBits) < r.start + r.length {
                        if Int(hc) >= shared.count { shared += [UInt16](repeating: 0, count: Int(hc) + 1 - shared.count) }
                        shared[Int(hc)] += 1
                        hc += 1
                    }
                    pos += UInt64(z.count)
                    try setEntry(guest + UInt64(c * cs), entry)
                    stats.compressedClusters += 1
                } else {
                    alignToCluster()
                    let host = pos
                    // Stored as they are: written straight from the batch, a run of neighbours
                    // with one call, without copying them into the output buffer.
                    if let r = run, r.first + r.count == c, r.host + UInt64(r.count * cs) == host {
                        run!.count += 1
                    } else {
                        try writeRun(run, from: buffer)
                        try flushOutput()
                        run = (c, 1, host)
                    }
                    pos += UInt64(cs)
                    try setEntry(guest + UInt64(c * cs), .standard(offset: host, copied: true))
                }
                stats.dataClusters += 1
            }
        }
        try writeRun(run, from: buffer)
        try flushOutput()
    }

    func writeRun(_ run: (first: Int, count: Int, host: UInt64)?, from buffer: [UInt8]) throws {
        guard let r = run else { return }
        try buffer.withUnsafeBytes { try file.write(UnsafeRawBufferPointer(rebasing: $0[(r.first * cs)..<((r.first + r.count) * cs)]), at: r.host) }
    }

    /// Compresses the given clusters of `buffer` on `threads` workers. Clusters are handed out one
    /// at a time (a worker that the scheduler sets aside holds up nothing but its own cluster),
    /// each worker with a compressor from the pool.
    static func compressAll(_ indices: [Int], buffer: [UInt8], clusterSize cs: Int, threads: Int, deflaters: DeflaterPool) -> [[UInt8]?] {
        let results = ResultSlots(count: indices.count)
        buffer.withUnsafeBytes { buf in
            nonisolated(unsafe) let src = buf
            DispatchQueue.concurrentPerform(iterations: max(1, min(threads, indices.count))) { _ in
                let d = deflaters.take()
                while let k = results.claim() {
                    let c = indices[k]
                    results.set(k, d.compress(UnsafeRawBufferPointer(rebasing: src[(c * cs)..<((c + 1) * cs)]), limit: cs - 1))
                }
                deflaters.give(d)
            }
        }
        return results.values
    }

    func sharedCount(_ hostCluster: UInt64) -> UInt64 {
        hostCluster < UInt64(shared.count) ? UInt64(shared[Int(hostCluster)]) : 0
    }

    mutating func alignToCluster() {
        pos = (pos + UInt64(cs) - 1) / UInt64(cs) * UInt64(cs)
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer, at host: UInt64) {
        if out.isEmpty { outStart = host }
        let gap = Int(host - (outStart + UInt64(out.count)))
        if gap > 0 { out += repeatElement(0, count: gap) }
        out.append(contentsOf: bytes)
    }

    mutating func flushOutput() throws {
        guard !out.isEmpty else { return }
        try file.write(out, at: outStart)
        out.removeAll(keepingCapacity: true)
    }

    mutating func setEntry(_ guest: UInt64, _ e: L2Entry) throws {
        let i1 = g.l1Index(guest)
        if i1 != l2Index {
            // Guest offsets arrive in order: the previous table is complete.
            try flushL2()
            l2Index = i1
        }
        l2[g.l2Index(guest)] = e.raw
        l2Dirty = true
    }

    /// Writes the current L2 table (when it holds anything) and points L1 at it.
    mutating func flushL2() throws {
        guard l2Dirty, l2Index >= 0 else { return }
        try flushOutput()
        alignToCluster()
        var b = [UInt8](repeating: 0, count: cs)
        for (i, v) in l2.enumerated() where v != 0 { b.putBE64(v, at: i * 8) }
        try file.write(b, at: pos)
        l1[l2Index] = L1Entry(l2Offset: pos, copied: true).raw
        pos += UInt64(cs)
        for i in l2.indices { l2[i] = 0 }
        l2Dirty = false
    }

    mutating func finish() throws -> Qcow2ConvertStats {
        try flushOutput()
        try flushL2()
        alignToCluster()
        // L1.
        var l1Bytes = [UInt8](repeating: 0, count: Int(l1Clusters) * cs)
        for (i, v) in l1.enumerated() { l1Bytes.putBE64(v, at: i * 8) }
        try file.write(l1Bytes, at: UInt64(cs))
        // Refcounts: every cluster up to here is in use once, but those shared by compressed data.
        let used = pos >> UInt64(g.clusterBits)
        let meta = g.refcountMetadata(forClusters: used)
        let tableStart = used
        let blocksStart = used + meta.tableClusters
        let end = blocksStart + meta.blocks
        try Refcounts.writeNew(file, geometry: g, tableStart: tableStart, tableClusters: meta.tableClusters,
                               blocksStart: blocksStart, blocks: meta.blocks, end: end) { max(1, sharedCount($0)) }
        try file.truncate(to: end << UInt64(g.clusterBits))
        header.refcountTableOffset = tableStart << UInt64(g.clusterBits)
        header.refcountTableClusters = UInt32(meta.tableClusters)
        let fixed = header.serialized()
        headerCluster.replaceSubrange(0..<fixed.count, with: fixed)
        try file.write(headerCluster, at: 0)
        stats.fileBytes = end << UInt64(g.clusterBits)
        return stats
    }
}

/// Slots filled by concurrent workers, each slot by exactly one.
///
/// `@unchecked Sendable` holds because `lock` guards `next`, so each slot index is handed to one
/// worker only and no two workers write the same slot; `values` is read after the workers are
/// done (`concurrentPerform` returns after the last one).
final class ResultSlots: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<[UInt8]?>

    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
    }

    deinit {
        slots.deinitialize()
        slots.deallocate()
    }

    private let lock = NSLock()
    private var next = 0

    /// The next slot no worker has claimed yet.
    func claim() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < slots.count else { return nil }
        next += 1
        return next - 1
    }

    func set(_ i: Int, _ v: [UInt8]?) { slots[i] = v }

    var values: [[UInt8]?] { Array(slots) }
}

/// Deflate streams shared by worker threads: taken for one cluster, given back after.
///
/// `@unchecked Sendable` holds because `lock` guards `free`; a `Deflater` taken from the pool is
/// used by that worker alone until it is given back.
final class DeflaterPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [Deflater] = []

    func take() -> Deflater {
        lock.lock()
        defer { lock.unlock() }
        return free.popLast() ?? Deflater()!
    }

    func give(_ d: Deflater) {
        lock.lock()
        free.append(d)
        lock.unlock()
    }
}
