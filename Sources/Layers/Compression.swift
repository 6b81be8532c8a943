import CDeflate
import CZstd
import Dispatch
import Foundation
import Host
import OCI

/// How a layer tar is compressed, and its OCI media type.
public enum LayerCompression: String, Sendable, CaseIterable, Codable {
    case gzip, zstd, none

    public var mediaType: String {
        switch self {
        case .gzip: MediaType.layerGzip
        case .zstd: MediaType.layerZstd
        case .none: MediaType.layer
        }
    }

    /// The level a capture compresses at unless told another.
    public var defaultLevel: Int {
        switch self {
        case .gzip: 6
        case .zstd: 3
        case .none: 0
        }
    }

    /// The compressor writing into `sink`.
    func compressor(into sink: ByteSink, level: Int?, threads: Int, nice: Int32? = nil, path: String) throws -> ByteSink {
        switch self {
        case .gzip: return ParallelGzip(sink: sink, level: Int32(level ?? defaultLevel), threads: threads, nice: nice, path: path)
        case .zstd: return try ZstdCompressor(sink: sink, level: Int32(level ?? defaultLevel), threads: threads, path: path)
        case .none: return sink
        }
    }
}

/// gzip on every core: the stream is cut into blocks of at most 1 MiB that libdeflate compresses
/// concurrently, each into a complete gzip member (header, deflate data, CRC-32 and size), and
/// the members are written in order. A gzip file of several members is one stream to every
/// reader (RFC 1952, section 2.2: gzip, zlib's gunzip, Go's compress/gzip as containerd and
/// containers/image use it, libarchive), and decompresses to the concatenation of the blocks.
/// libdeflate's level 6 is about three times faster than zlib's and a little smaller; starting
/// each block without the previous block's 32 KiB as a dictionary costs well under 1%.
///
/// The tar writer also cuts (`cut()`) before and after the content of each file of at least
/// `ownMembersFrom` bytes, so that its blocks depend on its content alone and can be compressed
/// before the capture (`PrecompressedFiles`, taken through `expect`).
final class ParallelGzip: ByteSink, @unchecked Sendable {
    static let blockSize = 1 << 20
    /// Files from this size on have members of their own.
    static let ownMembersFrom = 128 << 10

    let sink: ByteSink
    let level: Int32
    let path: String
    let threads: Int
    private let slots: DispatchSemaphore
    private let group = DispatchGroup()
    /// Threads of its own at a lower priority, when asked for (`nice`); else Dispatch's.
    private let workers: LoweredWorkers?
    private let lock = NSLock()
    private var pending = Data()
    private var submitted = 0
    private var written = 0
    private var results: [Int: Result<Data, LayersError>] = [:]
    /// Members compressed beforehand for the next blocks, in order, and where they are kept.
    private var expected: ArraySlice<PrecompressedFiles.Member> = []
    private var expectedFrom: PrecompressedFiles?

    init(sink: ByteSink, level: Int32, threads: Int, nice: Int32? = nil, path: String) {
        self.sink = sink
        self.level = level
        self.path = path
        self.threads = threads
        slots = DispatchSemaphore(value: max(2, threads * 2))
        workers = threads > 1 ? nice.map { LoweredWorkers(count: threads, nice: $0) } : nil
        pending.reserveCapacity(Self.blockSize)
    }

    deinit { workers?.close() }

    func write(_ buffer: UnsafeRawBufferPointer) throws {
        var rest = buffer
        while !rest.isEmpty {
            let take = min(rest.count, Self.blockSize - pending.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if pending.count == Self.blockSize {
                try submit()
            }
        }
    }

    /// Ends the current block here, so that the next byte starts a member; forgets what
    /// `expect` announced.
    func cut() throws {
        if !pending.isEmpty { try submit() }
        expected = []
        expectedFrom = nil
    }

    /// The next blocks (from a cut) may be `members`, compressed beforehand: each is taken when
    /// its block has the member's length and CRC-32, and compressed here otherwise.
    func expect(_ members: [PrecompressedFiles.Member], from files: PrecompressedFiles) {
        expected = members[...]
        expectedFrom = files
    }

    func finish() throws {
        // An empty stream is still one (empty) member, so that the blob is a gzip file.
        if !pending.isEmpty || submitted == 0 { try submit() }
        group.wait()
        try drain()
        try sink.finish()
    }

    private func submit() throws {
        let block = pending
        pending = Data()
        pending.reserveCapacity(Self.blockSize)
        let seq = submitted
        submitted += 1
        let level = self.level, path = self.path
        let early = takeExpected(for: block)
        let make: @Sendable () -> Result<Data, LayersError> = {
            if let (files, m) = early {
                files.took(m)
                return .success(m.data)
            }
            return Self.member(block, level: level, path: path)
        }
        if threads == 1 {
            // One core: no worker threads at all, so that a single-threaded run is one.
            lock.withLock { results[seq] = make() }
            try drain()
            return
        }
        slots.wait()
        group.enter()
        let work: @Sendable () -> Void = {
            let r = make()
            self.lock.withLock { self.results[seq] = r }
            self.slots.signal()
            self.group.leave()
        }
        if let workers { workers.submit(work) } else { DispatchQueue.global().async(execute: work) }
        try drain()
    }

    /// The member announced for this block, if the block is what it was compressed from.
    private func takeExpected(for block: Data) -> (PrecompressedFiles, PrecompressedFiles.Member)? {
        guard let m = expected.popFirst(), let files = expectedFrom, m.raw == block.count else { return nil }
        let crc = block.withUnsafeBytes { UInt32(libdeflate_crc32(0, $0.baseAddress, $0.count)) }
        guard crc == m.crc else {
            files.mismatched()
            return nil
        }
        return (files, m)
    }

    /// Writes the finished blocks that are next in order.
    private func drain() throws {
        while true {
            guard let r = lock.withLock({ results.removeValue(forKey: written) }) else { return }
            try r.get().withUnsafeBytes { try sink.write($0) }
            written += 1
        }
    }

    /// The members of a gzip stream written here, in order: the compressed and the raw bytes of
    /// each; nil if `data` is not a sequence of members of at most `blockSize` raw bytes.
    static func members(of data: Data) -> [(compressed: Int, raw: Int)]? {
        guard let d = libdeflate_alloc_decompressor() else { return nil }
        defer { libdeflate_free_decompressor(d) }
        var out = [UInt8](repeating: 0, count: blockSize)
        var found: [(compressed: Int, raw: Int)] = []
        return data.withUnsafeBytes { input -> [(compressed: Int, raw: Int)]? in
            var at = 0
            while at < input.count {
                var used = 0, raw = 0
                let r = out.withUnsafeMutableBytes { o in
                    libdeflate_gzip_decompress_ex(d, input.baseAddress! + at, input.count - at, o.baseAddress, o.count, &used, &raw)
                }
                guard r == LIBDEFLATE_SUCCESS else { return nil }
                found.append((used, raw))
                at += used
            }
            return found
        }
    }

    /// One block as a gzip member.
    static func member(_ input: Data, level: Int32, path: String) -> Result<Data, LayersError> {
        guard let c = libdeflate_alloc_compressor(level) else {
            return .failure(.compression(path: path, message: "libdeflate_alloc_compressor(\(level)) failed"))
        }
        defer { libdeflate_free_compressor(c) }
        var out = Data(count: libdeflate_gzip_compress_bound(c, input.count))
        let produced = input.withUnsafeBytes { i in
            out.withUnsafeMutableBytes { o in libdeflate_gzip_compress(c, i.baseAddress, i.count, o.baseAddress, o.count) }
        }
        guard produced > 0 else { return .failure(.compression(path: path, message: "libdeflate_gzip_compress found no room")) }
        out.count = produced
        return .success(out)
    }
}

/// Threads that run submitted work at a nice value of their own, and end on `close`. Dispatch's
/// threads are shared by the whole process, so lowering one would slow whatever it runs next.
final class LoweredWorkers: @unchecked Sendable {
    private let lock = NSLock()
    private let ready = DispatchSemaphore(value: 0)
    private var work: [@Sendable () -> Void] = []
    private var closed = false
    private let count: Int

    init(count: Int, nice: Int32) {
        self.count = count
        for i in 0..<count {
            let t = Thread { [self] in
                Processors.inBackground(nice: nice) {
                    while let w = next() { w() }
                }
            }
            t.name = "imgbench compression \(i + 1) (nice \(nice))"
            t.start()
        }
    }

    func submit(_ w: @escaping @Sendable () -> Void) {
        lock.withLock { work.append(w) }
        ready.signal()
    }

    /// The next piece of work; nil once closed and nothing is left.
    private func next() -> (@Sendable () -> Void)? {
        while true {
            ready.wait()
            let (w, done) = lock.withLock { () -> ((@Sendable () -> Void)?, Bool) in
                if !work.isEmpty { return (work.removeFirst(), false) }
                return (nil, closed)
            }
            if let w { return w }
            if done { return nil }
        }
    }

    /// Ends the threads once what was submitted has run: one wake-up more per thread, each of
    /// which ends a thread that finds no work left.
    func close() {
        lock.withLock { closed = true }
        for _ in 0..<count { ready.signal() }
    }
}

/// zstd through libzstd, with its own worker threads when the library has them.
final class ZstdCompressor: ByteSink {
    let sink: ByteSink
    let path: String
    let cctx: OpaquePointer
    private var out: [UInt8]

    init(sink: ByteSink, level: Int32, threads: Int, path: String) throws {
        self.sink = sink
        self.path = path
        guard let c = ZSTD_createCCtx() else { throw LayersError.compression(path: path, message: "ZSTD_createCCtx failed") }
        cctx = c
        out = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)
        if threads > 1 {
            // Fails harmlessly on a library built without threads; it then compresses on this one.
            _ = ZSTD_CCtx_setParameter(c, ZSTD_c_nbWorkers, Int32(threads))
        }
    }

    deinit { ZSTD_freeCCtx(cctx) }

    func write(_ buffer: UnsafeRawBufferPointer) throws {
        try run(buffer, ZSTD_e_continue)
    }

    func finish() throws {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), ZSTD_e_end)
        try sink.finish()
    }

    private func run(_ buffer: UnsafeRawBufferPointer, _ op: ZSTD_EndDirective) throws {
        var input = ZSTD_inBuffer(src: buffer.baseAddress, size: buffer.count, pos: 0)
        while true {
            var produced = 0
            let remaining: Int = out.withUnsafeMutableBytes { o in
                var output = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                let r = ZSTD_compressStream2(cctx, &output, &input, op)
                produced = output.pos
                return r
            }
            if ZSTD_isError(remaining) != 0 {
                throw LayersError.compression(path: path, message: String(cString: ZSTD_getErrorName(remaining)))
            }
            if produced > 0 { try out.withUnsafeBytes { try sink.write(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) } }
            let done = op == ZSTD_e_end ? remaining == 0 : input.pos == input.size
            if done { return }
        }
    }
}

/// Counts and hashes bytes on their way to the next sink: the diff_id of a layer is the hash
/// of the uncompressed tar, taken in the same pass that compresses it.
final class HashingSink: ByteSink {
    let next: ByteSink
    var hasher = Digest.Hasher()
    var count: Int64 = 0

    init(next: ByteSink) { self.next = next }

    func write(_ buffer: UnsafeRawBufferPointer) throws {
        hasher.update(buffer)
        count += Int64(buffer.count)
        try next.write(buffer)
    }

    func finish() throws { try next.finish() }

    var digest: Digest { hasher.finalize() }
}
