import Crypto
import CZlib
import CZstd
import Dispatch
import Foundation

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

    /// The compressor writing into `sink`.
    func compressor(into sink: ByteSink, level: Int?, threads: Int, path: String) throws -> ByteSink {
        switch self {
        case .gzip: return ParallelGzip(sink: sink, level: Int32(level ?? 6), threads: threads, path: path)
        case .zstd: return try ZstdCompressor(sink: sink, level: Int32(level ?? 3), threads: threads, path: path)
        case .none: return sink
        }
    }

    public static var processorCount: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }
}

/// gzip on every core, as pigz does it: the stream is cut into blocks that are deflated
/// concurrently, each primed with the last 32 KiB of the block before it and ended with a sync
/// flush (the last one with a final block), and the raw deflate outputs are written in order
/// between one gzip header and one trailer whose CRC is combined from the blocks' CRCs. The result
/// is a single ordinary gzip member.
final class ParallelGzip: ByteSink, @unchecked Sendable {
    static let blockSize = 1 << 20
    static let window = 32 << 10

    let sink: ByteSink
    let level: Int32
    let path: String
    let threads: Int
    private let slots: DispatchSemaphore
    private let group = DispatchGroup()
    private let lock = NSLock()
    private var pending = Data()
    private var previousTail = Data()
    private var submitted = 0
    private var written = 0
    private var results: [Int: Result<(Data, UInt32, Int), LayersError>] = [:]
    private var crc: UInt32 = 0
    private var total: UInt64 = 0
    private var headerWritten = false

    init(sink: ByteSink, level: Int32, threads: Int, path: String) {
        self.sink = sink
        self.level = level
        self.path = path
        self.threads = threads
        slots = DispatchSemaphore(value: max(2, threads * 2))
        pending.reserveCapacity(Self.blockSize)
    }

    func write(_ buffer: UnsafeRawBufferPointer) throws {
        var rest = buffer
        while !rest.isEmpty {
            let take = min(rest.count, Self.blockSize - pending.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<take]))
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if pending.count == Self.blockSize {
                try submit(last: false)
            }
        }
    }

    func finish() throws {
        try submit(last: true)
        group.wait()
        try drain()
        var trailer = [UInt8](repeating: 0, count: 8)
        for i in 0..<4 {
            trailer[i] = UInt8((crc >> (8 * UInt32(i))) & 0xff)
            trailer[4 + i] = UInt8((UInt32(truncatingIfNeeded: total) >> (8 * UInt32(i))) & 0xff)
        }
        try trailer.withUnsafeBytes { try sink.write($0) }
        try sink.finish()
    }

    private func submit(last: Bool) throws {
        if !headerWritten {
            let header: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]
            try header.withUnsafeBytes { try sink.write($0) }
            headerWritten = true
        }
        let block = pending
        let dictionary = previousTail
        previousTail = block.count >= Self.window ? block.suffix(Self.window) : (previousTail + block).suffix(Self.window)
        pending = Data()
        pending.reserveCapacity(Self.blockSize)
        let seq = submitted
        submitted += 1
        let level = self.level, path = self.path
        if threads == 1 {
            // One core: no worker threads at all, so that a single-threaded run is one.
            lock.withLock { results[seq] = Self.deflateBlock(block, dictionary: dictionary, level: level, last: last, path: path) }
            try drain()
            return
        }
        slots.wait()
        group.enter()
        DispatchQueue.global().async {
            let r = Self.deflateBlock(block, dictionary: dictionary, level: level, last: last, path: path)
            self.lock.withLock { self.results[seq] = r }
            self.slots.signal()
            self.group.leave()
        }
        try drain()
    }

    /// Writes the finished blocks that are next in order.
    private func drain() throws {
        while true {
            guard let r = lock.withLock({ results.removeValue(forKey: written) }) else { return }
            let (out, blockCRC, length) = try r.get()
            crc = written == 0 ? blockCRC : UInt32(crc32_combine(UInt(crc), UInt(blockCRC), Int(length)))
            total += UInt64(length)
            try out.withUnsafeBytes { try sink.write($0) }
            written += 1
        }
    }

    static func deflateBlock(_ input: Data, dictionary: Data, level: Int32, last: Bool, path: String)
        -> Result<(Data, UInt32, Int), LayersError>
    {
        var s = z_stream()
        guard deflateInit2_(&s, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                            Int32(MemoryLayout<z_stream>.size)) == Z_OK
        else { return .failure(.compression(path: path, message: "deflateInit2 failed")) }
        defer { deflateEnd(&s) }
        if !dictionary.isEmpty {
            let r = dictionary.withUnsafeBytes {
                deflateSetDictionary(&s, $0.bindMemory(to: Bytef.self).baseAddress, uInt($0.count))
            }
            guard r == Z_OK else { return .failure(.compression(path: path, message: "deflateSetDictionary: \(r)")) }
        }
        let bound = Int(deflateBound(&s, uLong(input.count))) + 64
        var out = Data(count: bound)
        var produced = 0
        let crc: UInt32 = input.withUnsafeBytes { UInt32(crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, uInt($0.count))) }
        let status: Int32 = input.withUnsafeBytes { inBuf in
            out.withUnsafeMutableBytes { outBuf in
                s.next_in = UnsafeMutablePointer(mutating: inBuf.bindMemory(to: Bytef.self).baseAddress)
                s.avail_in = uInt(inBuf.count)
                s.next_out = outBuf.bindMemory(to: Bytef.self).baseAddress
                s.avail_out = uInt(outBuf.count)
                let r = deflate(&s, last ? Z_FINISH : Z_SYNC_FLUSH)
                produced = outBuf.count - Int(s.avail_out)
                return r
            }
        }
        guard status == (last ? Z_STREAM_END : Z_OK), s.avail_in == 0 else {
            return .failure(.compression(path: path, message: "deflate returned \(status)"))
        }
        out.count = produced
        return .success((out, crc, input.count))
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
    var hasher = Crypto.SHA256()
    var count: Int64 = 0

    init(next: ByteSink) { self.next = next }

    func write(_ buffer: UnsafeRawBufferPointer) throws {
        hasher.update(bufferPointer: buffer)
        count += Int64(buffer.count)
        try next.write(buffer)
    }

    func finish() throws { try next.finish() }

    var digest: Digest { Digest(hasher.finalize()) }
}

/// A SHA-256 being fed in pieces.
struct SHA256Hasher {
    var h = Crypto.SHA256()
    mutating func update(_ b: UnsafeRawBufferPointer) { h.update(bufferPointer: b) }
    var digest: Digest { Digest(h.finalize()) }
}
