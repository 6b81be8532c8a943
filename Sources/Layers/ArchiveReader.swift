import CArchive
import Foundation
import Host
import OCI

/// A libarchive reader over a file, with any compression libarchive knows (gzip, zstd, none).
/// The file's bytes are hashed as they are read, so that the blob digest is checked in the same
/// pass that unpacks it. It owns the `struct archive *`; deinit frees it.
final class ArchiveReader {
    private var handle: OpaquePointer?
    let path: String
    private let fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    fileprivate var hasher = Digest.Hasher()
    fileprivate(set) var bytesRead: Int64 = 0
    fileprivate var readError: Int32 = 0

    /// `raw`: read the decompressed stream as one entry instead of as a tar.
    convenience init(path: String, raw: Bool = false) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HostError.systemCall(path: path, operation: "open", errno: errno) }
        try self.init(fd: fd, name: path, raw: raw)
    }

    /// Reads from an open descriptor (a file or a pipe), which it owns and closes; `name` stands
    /// for it in errors.
    init(fd: Int32, name: String, raw: Bool = false) throws {
        self.path = name
        self.fd = fd
        buffer = .allocate(byteCount: 1 << 20, alignment: 16)
        guard let a = archive_read_new() else {
            close(fd)
            buffer.deallocate()
            throw LayersError.archive(path: path, entry: nil, message: "archive_read_new failed")
        }
        handle = a
        archive_read_support_filter_all(a)
        if raw {
            archive_read_support_format_raw(a)
        } else {
            archive_read_support_format_tar(a)
        }
        let opaque = Unmanaged.passUnretained(self).toOpaque()
        let r = archive_read_open(a, opaque, nil, { _, client, out in
            let r = Unmanaged<ArchiveReader>.fromOpaque(client!).takeUnretainedValue()
            while true {
                let n = read(r.fd, r.buffer.baseAddress, r.buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n < 0 {
                    r.readError = errno
                    return -1
                }
                r.hasher.update(UnsafeRawBufferPointer(rebasing: r.buffer[0..<n]))
                r.bytesRead += Int64(n)
                out?.pointee = UnsafeRawPointer(r.buffer.baseAddress)
                return n
            }
        }, nil)
        try check(r, entry: nil)
    }

    deinit {
        if let a = handle { archive_read_free(a) }
        close(fd)
        buffer.deallocate()
    }

    func check(_ r: Int32, entry: String?) throws {
        guard r < ARCHIVE_WARN else { return }
        if readError != 0 { throw HostError.systemCall(path: path, operation: "read", errno: readError) }
        let msg = handle.flatMap { archive_error_string($0) }.map { String(cString: $0) } ?? "error \(r)"
        throw LayersError.archive(path: path, entry: entry, message: msg)
    }

    /// The next entry's header, or nil at the end. Its data is read with `readData` before the
    /// next call.
    func next() throws -> ArchiveEntry? {
        let e = try ArchiveEntry(path: path)
        let r = archive_read_next_header2(handle, e.pointer)
        if r == ARCHIVE_EOF { return nil }
        try check(r, entry: nil)
        return e
    }

    /// The current entry's data as blocks at offsets (sparse files have holes between them).
    func readData(entry: String, _ body: (Int64, UnsafeRawBufferPointer) throws -> Void) throws {
        var buf: UnsafeRawPointer?
        var size = 0
        var offset: Int64 = 0
        while true {
            let r = archive_read_data_block(handle, &buf, &size, &offset)
            if r == ARCHIVE_EOF { return }
            try check(r, entry: entry)
            if size > 0 { try body(offset, UnsafeRawBufferPointer(start: buf, count: size)) }
        }
    }

    /// Reads whatever is left of the file, so that the digest covers all of it.
    func finishDigest() throws -> (Digest, Int64) {
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw HostError.systemCall(path: path, operation: "read", errno: errno) }
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            bytesRead += Int64(n)
        }
        return (hasher.finalize(), bytesRead)
    }

    var filterName: String {
        guard let a = handle, archive_filter_count(a) > 1, let n = archive_filter_name(a, 0) else { return "none" }
        return String(cString: n)
    }
}
