import CArchive
import Foundation

/// One tar entry's header, libarchive's `struct archive_entry *`: the only way the rest of the
/// module reads or writes a header. It owns the pointer; deinit frees it. `ArchiveReader.next()`
/// fills a new one per entry, `ArchiveWriter.writeHeader(_:)` writes one out.
final class ArchiveEntry {
    /// For ArchiveReader and ArchiveWriter only.
    let pointer: OpaquePointer

    /// `path` stands for the archive in the error when libarchive cannot allocate an entry.
    init(path: String) throws {
        guard let e = archive_entry_new() else {
            throw LayersError.archive(path: path, entry: nil, message: "archive_entry_new failed")
        }
        pointer = e
    }

    deinit { archive_entry_free(pointer) }

    /// Forgets every field, so that the entry can describe another file.
    func clear() { archive_entry_clear(pointer) }

    /// The name in the tar, as written (a `./` prefix or a trailing `/` kept).
    var path: String {
        get {
            if let p = archive_entry_pathname(pointer) { return String(cString: p) }
            if let p = archive_entry_pathname_utf8(pointer) { return String(cString: p) }
            return ""
        }
        set { archive_entry_copy_pathname(pointer, newValue) }
    }

    /// File type and permission bits together, as in `st_mode`.
    var mode: mode_t {
        get { archive_entry_mode(pointer) }
        set { archive_entry_set_mode(pointer, newValue) }
    }

    /// The `S_IFMT` bits of `mode`.
    var fileType: mode_t { mode & S_IFMT }
    /// The permission bits of `mode` (set-id and sticky bits included).
    var permissions: mode_t { mode & 0o7777 }

    var size: Int64 {
        get { archive_entry_size(pointer) }
        set { archive_entry_set_size(pointer, newValue) }
    }

    var uid: Int64 {
        get { archive_entry_uid(pointer) }
        set { archive_entry_set_uid(pointer, newValue) }
    }

    var gid: Int64 {
        get { archive_entry_gid(pointer) }
        set { archive_entry_set_gid(pointer, newValue) }
    }

    /// Seconds since the epoch; tars written here carry no fraction of a second.
    var mtime: Int64 {
        get { Int64(archive_entry_mtime(pointer)) }
        set { archive_entry_set_mtime(pointer, time_t(newValue), 0) }
    }

    /// What a symlink points at, nil for anything else.
    var symlink: String? {
        get { archive_entry_symlink(pointer).map { String(cString: $0) } }
        set { archive_entry_copy_symlink(pointer, newValue) }
    }

    /// The earlier entry a hardlink names, nil for anything else.
    var hardlink: String? {
        get { archive_entry_hardlink(pointer).map { String(cString: $0) } }
        set { archive_entry_copy_hardlink(pointer, newValue) }
    }

    /// A device node's numbers.
    var rdevMajor: dev_t {
        get { archive_entry_rdevmajor(pointer) }
        set { archive_entry_set_rdevmajor(pointer, newValue) }
    }

    var rdevMinor: dev_t {
        get { archive_entry_rdevminor(pointer) }
        set { archive_entry_set_rdevminor(pointer, newValue) }
    }

    /// The extended attributes. Setting replaces them all, added in the order of their names so
    /// that the same attributes always make the same header.
    var xattrs: [String: [UInt8]] {
        get {
            var result: [String: [UInt8]] = [:]
            guard archive_entry_xattr_reset(pointer) > 0 else { return result }
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while archive_entry_xattr_next(pointer, &name, &value, &size) == ARCHIVE_OK {
                guard let name else { continue }
                result[String(cString: name)] = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            }
            return result
        }
        set {
            archive_entry_xattr_clear(pointer)
            for name in newValue.keys.sorted() {
                let v = newValue[name]!
                v.withUnsafeBytes { archive_entry_xattr_add_entry(pointer, name, $0.baseAddress, v.count) }
            }
        }
    }
}
