import CArchive
import Foundation
import OCI

/// A libarchive writer producing a PAX tar into a `ByteSink`. It owns the `struct archive *`:
/// `close()` finishes the tar and reports libarchive's error, deinit frees what is left.
final class ArchiveWriter {
    private var handle: OpaquePointer?
    let sink: ByteSink
    let path: String
    fileprivate var sinkError: Error?

    init(sink: ByteSink, path: String) throws {
        self.sink = sink
        self.path = path
        guard let a = archive_write_new() else { throw LayersError.archive(path: path, entry: nil, message: "archive_write_new failed") }
        handle = a
        // Restricted PAX: ustar headers, with PAX extended headers only where ustar cannot say it
        // (long names, large sizes or ids, extended attributes).
        try check(archive_write_set_format_pax_restricted(a), entry: nil)
        try check(archive_write_add_filter_none(a), entry: nil)
        // Unblocked: each piece reaches the sink when it is written, so that the gzip compressor
        // can cut its members where the tar writer says (the bytes are the same as blocked with
        // an unpadded last block).
        try check(archive_write_set_bytes_per_block(a, 0), entry: nil)
        try check(archive_write_set_bytes_in_last_block(a, 1), entry: nil)
        let opaque = Unmanaged.passUnretained(self).toOpaque()
        try check(archive_write_open(a, opaque, nil, { _, client, buffer, length in
            let w = Unmanaged<ArchiveWriter>.fromOpaque(client!).takeUnretainedValue()
            do {
                try w.sink.write(UnsafeRawBufferPointer(start: buffer, count: length))
                return length
            } catch {
                w.sinkError = error
                return -1
            }
        }, nil), entry: nil)
    }

    deinit {
        if let a = handle { archive_write_free(a) }
    }

    private func check(_ r: Int32, entry: String?) throws {
        guard r < ARCHIVE_WARN else { return }
        if let e = sinkError { throw e }
        let msg = handle.flatMap { archive_error_string($0) }.map { String(cString: $0) } ?? "error \(r)"
        throw LayersError.archive(path: path, entry: entry, message: msg)
    }

    func writeHeader(_ entry: ArchiveEntry) throws {
        try check(archive_write_header(handle, entry.pointer), entry: entry.path)
    }

    func writeData(_ buffer: UnsafeRawBufferPointer, name: String) throws {
        let n = archive_write_data(handle, buffer.baseAddress, buffer.count)
        if n < 0 { try check(Int32(n), entry: name) }
        guard n == buffer.count else {
            throw LayersError.archive(path: path, entry: name, message: "short write of \(n) of \(buffer.count) bytes")
        }
    }

    /// Writes the end of the archive and flushes it to the sink.
    func close() throws {
        guard let a = handle else { return }
        try check(archive_write_close(a), entry: nil)
        archive_write_free(a)
        handle = nil
    }
}
