#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file opened for positional I/O. Every call names the file in its error.
///
/// Not `Sendable`: `close()` changes the descriptor with no lock, so a close on one thread races
/// a read on another.
public final class BlockFile {
    public let path: String
    public let writable: Bool
    private var fd: Int32

    public enum Mode: Sendable {
        case readOnly
        case readWrite
        /// Create or truncate.
        case create
    }

    public init(path: String, mode: Mode) throws {
        self.path = path
        let flags: Int32
        switch mode {
        case .readOnly: flags = O_RDONLY | O_CLOEXEC
        case .readWrite: flags = O_RDWR | O_CLOEXEC
        case .create: flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC
        }
        writable = mode != .readOnly
        fd = open(path, flags, 0o644)
        if fd < 0 { throw BlockFile.error(path, "open") }
        var st = stat()
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            _ = Glibc.close(fd)
            fd = -1
            throw QcowError.io(path: path, operation: "open", errno: EISDIR, message: "is a directory")
        }
    }

    deinit {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    public func close() throws {
        guard fd >= 0 else { return }
        let rc = Glibc.close(fd)
        fd = -1
        if rc != 0 { throw BlockFile.error(path, "close") }
    }

    static func error(_ path: String, _ operation: String) -> QcowError {
        let e = errno
        return .io(path: path, operation: operation, errno: e, message: String(cString: strerror(e)))
    }

    public func size() throws -> UInt64 {
        var st = stat()
        if fstat(fd, &st) != 0 { throw BlockFile.error(path, "stat") }
        return UInt64(st.st_size)
    }

    /// Bytes the file occupies on disk.
    public func allocatedBytes() throws -> UInt64 {
        var st = stat()
        if fstat(fd, &st) != 0 { throw BlockFile.error(path, "stat") }
        return UInt64(st.st_blocks) * 512
    }

    /// Offsets beyond what the kernel takes (2^63) come only from hostile metadata.
    func checkOffset(_ offset: UInt64, _ count: Int, _ operation: String) throws {
        guard offset <= UInt64(Int64.max) - UInt64(count) else {
            throw QcowError.io(path: path, operation: "\(operation) at \(offset)", errno: EINVAL, message: "offset beyond 2^63")
        }
    }

    /// Reads up to `count` bytes into `buffer`; returns how many were read (short only at end of file).
    @discardableResult
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        try transfer(buffer.count, at: offset, "read", stopAtEnd: true) { done in
            pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
        }
    }

    /// Repeats `step` (one pread or pwrite from byte `done` on) until `count` bytes are done,
    /// retrying when a signal interrupts it; with `stopAtEnd`, a step that moves nothing ends it.
    /// Returns the bytes done.
    private func transfer(_ count: Int, at offset: UInt64, _ operation: String, stopAtEnd: Bool,
                          _ step: (_ done: Int) -> Int) throws -> Int {
        try checkOffset(offset, count, operation)
        var done = 0
        while done < count {
            let n = step(done)
            if n < 0 {
                if errno == EINTR { continue }
                throw BlockFile.error(path, "\(operation) at \(offset + UInt64(done))")
            }
            if n == 0 && stopAtEnd { break }
            done += n
        }
        return done
    }

    /// Reads exactly `count` bytes or fails with `truncated`, naming `what` was being read.
    public func readExactly(_ count: Int, at offset: UInt64, what: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = try bytes.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        if n != count {
            throw QcowError.truncated(path: path, what: what, offset: offset, needed: count, fileSize: (try? size()) ?? 0)
        }
        return bytes
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        _ = try transfer(buffer.count, at: offset, "write", stopAtEnd: false) { done in
            pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
        }
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    public func truncate(to size: UInt64) throws {
        try checkOffset(size, 0, "truncate")
        if ftruncate(fd, off_t(size)) != 0 { throw BlockFile.error(path, "truncate to \(size)") }
    }

    public func sync() throws {
        if fsync(fd) != 0 { throw BlockFile.error(path, "fsync") }
    }

    /// The next offset at or after `offset` that holds data, or nil when only a hole follows.
    /// Falls back to `offset` itself where the filesystem does not answer SEEK_DATA.
    public func nextData(from offset: UInt64) -> UInt64? {
        guard offset <= UInt64(Int64.max) else { return nil }
        let r = lseek(fd, off_t(offset), 3 /* SEEK_DATA */)
        if r < 0 { return errno == ENXIO ? nil : offset }
        return UInt64(r)
    }

    /// The next hole at or after `offset` (the end of file counts as one).
    public func nextHole(from offset: UInt64) -> UInt64 {
        guard offset <= UInt64(Int64.max) else { return UInt64.max }
        let r = lseek(fd, off_t(offset), 4 /* SEEK_HOLE */)
        if r < 0 { return UInt64.max }
        return UInt64(r)
    }
}

/// Big-endian field access on byte arrays, one field at a time.
extension Array where Element == UInt8 {
    @inline(__always)
    func be64(_ at: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(self[at + i]) }
        return v
    }

    @inline(__always)
    func be32(_ at: Int) -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(self[at + i]) }
        return v
    }

    @inline(__always)
    func be16(_ at: Int) -> UInt16 {
        UInt16(self[at]) << 8 | UInt16(self[at + 1])
    }

    @inline(__always)
    mutating func putBE64(_ v: UInt64, at: Int) {
        for i in 0..<8 { self[at + i] = UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64(i))) }
    }

    @inline(__always)
    mutating func putBE32(_ v: UInt32, at: Int) {
        for i in 0..<4 { self[at + i] = UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32(i))) }
    }

    @inline(__always)
    mutating func putBE16(_ v: UInt16, at: Int) {
        self[at] = UInt8(v >> 8)
        self[at + 1] = UInt8(truncatingIfNeeded: v)
    }
}

extension UnsafeRawBufferPointer {
    /// True when every byte is zero; scans eight bytes at a time.
    public func isAllZero() -> Bool {
        guard let base = baseAddress else { return true }
        let words = count / 8
        let p = base.assumingMemoryBound(to: UInt8.self)
        var i = 0
        // Unaligned loads are fine on the platforms we build for.
        while i < words {
            if base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
            i += 1
        }
        var j = words * 8
        while j < count {
            if p[j] != 0 { return false }
            j += 1
        }
        return true
    }
}
