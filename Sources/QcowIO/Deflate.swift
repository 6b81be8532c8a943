import CZlib

/// Raw deflate (no zlib header, 4 KiB window), as qcow2 stores compressed clusters.
public enum Deflate {
    /// QEMU compresses with the default level, a 4 KiB window and memory level 9.
    static let windowBits: Int32 = -12

    /// Compresses `input`; returns nil when the result would not be smaller than `limit` bytes.
    public static func compress(_ input: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
        Deflater()?.compress(input, limit: limit)
    }

    /// Inflates `input` into exactly `output.count` bytes. Trailing input (sector padding) is
    /// ignored, as QEMU does. Returns false when the data is not valid deflate or too short.
    public static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Bool {
        var stream = z_stream()
        guard inflateInit2_(&stream, windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return false }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        stream.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(output.count)
        let rc = inflate(&stream, Z_FINISH)
        // QEMU accepts a full output buffer even when the stream end marker has not been seen.
        return (rc == Z_STREAM_END || rc == Z_BUF_ERROR || rc == Z_OK) && stream.avail_out == 0
    }
}

/// A reusable raw-deflate compressor: one per thread, reset between clusters rather than set up
/// anew, which saves the window allocation and initialisation per cluster.
public final class Deflater {
    private var stream = z_stream()

    public init?(level: Int32 = Z_DEFAULT_COMPRESSION) {
        guard deflateInit2_(&stream, level, Z_DEFLATED, Deflate.windowBits, 9, Z_DEFAULT_STRATEGY,
                            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
    }

    deinit { deflateEnd(&stream) }

    /// Compresses `input`; returns nil when the result would not be smaller than `limit` bytes.
    public func compress(_ input: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
        guard deflateReset(&stream) == Z_OK else { return nil }
        var out = [UInt8](repeating: 0, count: limit)
        let rc: Int32 = out.withUnsafeMutableBytes { o in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = o.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = uInt(limit)
            return deflate(&stream, Z_FINISH)
        }
        guard rc == Z_STREAM_END else { return nil }
        out.removeLast(Int(stream.avail_out))
        return out
    }
}
