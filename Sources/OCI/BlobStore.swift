import Crypto
import Foundation
import Host

/// Content-addressed blobs under `blobs/sha256/<hex>` of a layout.
///
/// A blob is written to a temporary file beside its final place, hashed while it streams, and
/// renamed to its digest only when complete, so a reader never sees half a blob. Writing a blob
/// that is already there keeps the one copy. Reads verify the digest (and the size when known).
public final class BlobStore: Sendable {
    public let root: String
    public var directory: String { root + "/blobs/sha256" }

    public init(root: String) { self.root = root }

    public func path(of digest: Digest) -> String { directory + "/" + digest.hex }

    public func contains(_ digest: Digest) -> Bool { access(path(of: digest), F_OK) == 0 }

    /// A writer for one new blob.
    public func writer() throws -> BlobWriter {
        try FileSystem.makeDirectories(directory)
        return try BlobWriter(store: self)
    }

    /// Stores bytes as a blob and describes it.
    public func put(_ data: Data, mediaType: String, annotations: [String: String]? = nil) throws -> Descriptor {
        let w = try writer()
        try data.withUnsafeBytes { try w.write($0) }
        let (digest, size) = try w.commit()
        return Descriptor(mediaType: mediaType, digest: digest, size: size, annotations: annotations)
    }

    /// Reads a whole blob, checking its digest and, when given, its size.
    public func read(_ digest: Digest, size: Int64? = nil) throws -> Data {
        let p = path(of: digest)
        guard contains(digest) else { throw OCIError.blobNotFound(layout: root, digest: digest.description) }
        guard let data = FileManager.default.contents(atPath: p) else { throw OCIError.io(path: p, operation: "read", errno: errno) }
        if let size, Int64(data.count) != size {
            throw OCIError.sizeMismatch(path: p, digest: digest.description, expected: size, actual: Int64(data.count))
        }
        let actual = Digest.of(data)
        guard actual == digest else {
            throw OCIError.digestMismatch(path: p, expected: digest.description, actual: actual.description)
        }
        return data
    }

    public func read(_ d: Descriptor) throws -> Data { try read(d.digest, size: d.size) }

    /// Streams a blob from disk and checks its digest and size without holding it in memory.
    public func verify(_ d: Descriptor) throws {
        let p = path(of: d.digest)
        guard contains(d.digest) else { throw OCIError.blobNotFound(layout: root, digest: d.digest.description) }
        let (actual, total) = try Digest.ofFile(p)
        if total != d.size {
            throw OCIError.sizeMismatch(path: p, digest: d.digest.description, expected: d.size, actual: total)
        }
        guard actual == d.digest else {
            throw OCIError.digestMismatch(path: p, expected: d.digest.description, actual: actual.description)
        }
    }

    /// The digests of every blob present.
    public func list() throws -> [Digest] {
        try FileSystem.children(directory).compactMap { try? Digest(parsing: "sha256:" + $0) }
    }
}

/// One blob being written: bytes go to a temporary file and into the hash; `commit()` renames the
/// file to its digest, `abort()` (or deinit without commit) removes it.
public final class BlobWriter: ByteSink, @unchecked Sendable {
    let store: BlobStore
    package let tempPath: String
    private var fd: Int32
    private var hasher = SHA256()
    public private(set) var count: Int64 = 0
    private var cleanupID: Int
    private var done = false

    init(store: BlobStore) throws {
        self.store = store
        let template = store.directory + "/.tmp-XXXXXX"
        var bytes = Array(template.utf8CString)
        let fd = bytes.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw OCIError.io(path: template, operation: "mkstemp", errno: errno) }
        self.fd = fd
        tempPath = stringFromCArray(bytes)
        let p = tempPath
        cleanupID = Cleanup.register("partial blob \(p)") { unlink(p) }
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        guard !buffer.isEmpty else { return }
        hasher.update(bufferPointer: buffer)
        try FileSystem.writeAll(fd, buffer, path: tempPath)
        count += Int64(buffer.count)
    }

    public func finish() throws {}

    /// Moves the blob into place under its digest (keeping an existing copy) and returns it.
    public func commit() throws -> (Digest, Int64) {
        let digest = Digest(hasher.finalize())
        guard fsync(fd) == 0 else { throw OCIError.io(path: tempPath, operation: "fsync", errno: errno) }
        close(fd)
        fd = -1
        fchmodat(AT_FDCWD, tempPath, 0o644, 0)
        let final = store.path(of: digest)
        if store.contains(digest) {
            unlink(tempPath)
        } else if rename(tempPath, final) != 0 {
            let e = errno
            unlink(tempPath)
            throw OCIError.io(path: final, operation: "rename", errno: e)
        }
        done = true
        Cleanup.unregister(cleanupID)
        return (digest, count)
    }

    public func abort() {
        guard !done else { return }
        done = true
        if fd >= 0 { close(fd); fd = -1 }
        unlink(tempPath)
        Cleanup.unregister(cleanupID)
    }

    deinit { abort() }
}
