import Foundation
import Host
import OCI

/// Bytes into a plain file, written beside it under `.partial` and renamed when finished.
public final class FileSink: ByteSink {
    public let path: String
    private var fd: Int32
    private let partial: String
    private var cleanupID: Int

    public init(path: String) throws {
        self.path = path
        partial = path + ".partial"
        fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw HostError.systemCall(path: partial, operation: "create", errno: errno) }
        let p = partial
        cleanupID = Cleanup.register("partial file \(p)") { unlink(p) }
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        try FileSystem.writeAll(fd, buffer, path: partial)
    }

    public func finish() throws {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        guard rename(partial, path) == 0 else { throw HostError.systemCall(path: path, operation: "rename", errno: errno) }
        Cleanup.unregister(cleanupID)
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(partial)
            Cleanup.unregister(cleanupID)
        }
    }
}

/// Bytes into an open descriptor that this sink owns, typically the write end of a pipe;
/// `finish` (or deinit) closes it, which the reader sees as the end of the stream.
public final class DescriptorSink: ByteSink {
    public let name: String
    private var fd: Int32

    public init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw HostError.systemCall(path: name, operation: "write after close", errno: EBADF) }
        try FileSystem.writeAll(fd, buffer, path: name)
    }

    public func finish() throws {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }

    deinit { if fd >= 0 { close(fd) } }
}
