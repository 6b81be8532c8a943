import Foundation

/// Thin, throwing wrappers over the system calls the layer code needs. Nothing here follows a
/// symlink unless its name says so.
public enum FileSystem {
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        var p = ""
        for comp in path.split(separator: "/", omittingEmptySubsequences: true) {
            p += (p.isEmpty && !path.hasPrefix("/") ? "" : "/") + comp
            if mkdir(p, mode) != 0 && errno != EEXIST {
                throw HostError.systemCall(path: p, operation: "mkdir", errno: errno)
            }
        }
    }

    /// rename(2): `to` is replaced atomically, the step that makes a cache entry or an output
    /// complete.
    public static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw HostError.systemCall(path: to, operation: "rename", errno: errno) }
    }

    public static func lstat(_ path: String) throws -> stat {
        var st = stat()
        guard Glibc.lstat(path, &st) == 0 else { throw HostError.systemCall(path: path, operation: "lstat", errno: errno) }
        return st
    }

    /// stat(2): what `path` names, through a symbolic link.
    public static func statFollowing(_ path: String) throws -> stat {
        var st = stat()
        guard stat(path, &st) == 0 else { throw HostError.systemCall(path: path, operation: "stat", errno: errno) }
        return st
    }

    public static func lstatIfExists(_ path: String) throws -> stat? {
        var st = stat()
        if Glibc.lstat(path, &st) == 0 { return st }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw HostError.systemCall(path: path, operation: "lstat", errno: errno)
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return Glibc.lstat(path, &st) == 0
    }

    /// The names in a directory, sorted by their bytes, without `.` and `..`.
    public static func children(_ path: String) throws -> [String] {
        guard let d = opendir(path) else { throw HostError.systemCall(path: path, operation: "opendir", errno: errno) }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    public static func readlink(_ path: String) throws -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = Glibc.readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { throw HostError.systemCall(path: path, operation: "readlink", errno: errno) }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var off = 0
        while off < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + off, buffer.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw HostError.systemCall(path: path, operation: "write", errno: errno)
            }
            off += n
        }
    }

    /// Calls `body` with successive chunks of a file.
    /// Reads a descriptor to its end, discarding what it reads.
    public static func drain(_ fd: Int32) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
        }
    }

    public static func readChunks(_ path: String, chunkSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        // Without waiting, and only a regular file: a FIFO (one swapped in after a caller's
        // lstat, say) would make the read wait forever.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { throw HostError.systemCall(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.isRegular else { throw HostError.io(path: path, message: "not a regular file any more") }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buf.deallocate() }
        while true {
            let n = read(fd, buf.baseAddress, chunkSize)
            if n < 0 {
                if errno == EINTR { continue }
                throw HostError.systemCall(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            try body(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
    }

    /// Removes a path and everything under it, without following symlinks. Missing is fine, and
    /// so is what another remover of the same tree took meanwhile (a build's own cleanup and the
    /// Ctrl-C handler); a folder that something filled again while it was emptied is emptied
    /// again, a few times.
    public static func removeTree(_ path: String) throws {
        guard let st = try lstatIfExists(path) else { return }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            guard unlink(path) == 0 || errno == ENOENT else { throw HostError.systemCall(path: path, operation: "unlink", errno: errno) }
            return
        }
        // A directory without write or search permission cannot be emptied even by its owner
        // when not root; make it so first.
        chmod(path, 0o700)
        for attempt in 1...5 {
            guard let names = try childrenIfExists(path) else { return }
            for c in names { try removeTree(path + "/" + c) }
            if rmdir(path) == 0 || errno == ENOENT { return }
            if errno != ENOTEMPTY || attempt == 5 { throw HostError.systemCall(path: path, operation: "rmdir", errno: errno) }
        }
    }

    /// The names in a folder, or nil when it is gone.
    static func childrenIfExists(_ path: String) throws -> [String]? {
        do {
            return try children(path)
        } catch let HostError.systemCall(_, _, e) where e == ENOENT {
            return nil
        }
    }

    /// Bytes allocated on disk by everything under a path (st_blocks), each inode counted once.
    public static func allocatedBytes(_ path: String) throws -> UInt64 {
        var seen = Set<UInt64>()
        func walk(_ p: String) throws -> UInt64 {
            let st = try lstat(p)
            var total: UInt64 = 0
            if seen.insert(UInt64(st.st_ino)).inserted { total += UInt64(st.st_blocks) * 512 }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                for c in try children(p) { total += try walk(p + "/" + c) }
            }
            return total
        }
        return try walk(path)
    }

    /// Copies a tree exactly: content, modes, owners, xattrs, hardlinks, device nodes, times.
    public static func copyTree(from src: String, to dst: String) throws {
        var links: [UInt64: String] = [:]
        var dirTimes: [(String, stat)] = []
        func copy(_ s: String, _ d: String) throws {
            let st = try lstat(s)
            let type = st.st_mode & S_IFMT
            switch type {
            case S_IFDIR:
                if mkdir(d, 0o700) != 0 && errno != EEXIST { throw HostError.systemCall(path: d, operation: "mkdir", errno: errno) }
                for c in try children(s) { try copy(s + "/" + c, d + "/" + c) }
                dirTimes.append((d, st))
            case S_IFREG:
                if st.st_nlink > 1, let first = links[UInt64(st.st_ino)] {
                    guard link(first, d) == 0 else { throw HostError.systemCall(path: d, operation: "link", errno: errno) }
                    return
                }
                try copyFile(s, d)
                if st.st_nlink > 1 { links[UInt64(st.st_ino)] = d }
            case S_IFLNK:
                guard symlink(try readlink(s), d) == 0 else { throw HostError.systemCall(path: d, operation: "symlink", errno: errno) }
            default:
                guard mknod(d, st.st_mode, st.st_rdev) == 0 else { throw HostError.systemCall(path: d, operation: "mknod", errno: errno) }
            }
            try copyMetadata(from: s, st, to: d, setTimes: type != S_IFDIR)
        }
        try copy(src, dst)
        for (d, st) in dirTimes.reversed() { try setTimes(d, st) }
    }

    public static func copyFile(_ s: String, _ d: String) throws {
        let out = open(d, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard out >= 0 else { throw HostError.systemCall(path: d, operation: "create", errno: errno) }
        defer { close(out) }
        try readChunks(s) { try writeAll(out, $0, path: d) }
    }

    public static func copyMetadata(from s: String, _ st: stat, to d: String, setTimes times: Bool) throws {
        guard lchown(d, st.st_uid, st.st_gid) == 0 else { throw HostError.systemCall(path: d, operation: "lchown", errno: errno) }
        for (name, value) in try xattrs(s) { try setXattr(d, name, value) }
        if (st.st_mode & S_IFMT) != S_IFLNK {
            guard chmod(d, st.st_mode & 0o7777) == 0 else { throw HostError.systemCall(path: d, operation: "chmod", errno: errno) }
        }
        if times { try setTimes(d, st) }
    }

    public static func setTimes(_ d: String, _ st: stat) throws {
        var ts = [st.st_atim, st.st_mtim]
        guard utimensat(AT_FDCWD, d, &ts, AT_SYMLINK_NOFOLLOW) == 0 else {
            throw HostError.systemCall(path: d, operation: "utimensat", errno: errno)
        }
    }
}

/// A C string held in an array (as mkstemp and mkdtemp fill in), up to its terminating NUL.
public func stringFromCArray(_ a: [CChar]) -> String {
    String(decoding: a.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension stat {
    public var fileType: mode_t { st_mode & S_IFMT }
    public var isDirectory: Bool { fileType == S_IFDIR }
    public var isRegular: Bool { fileType == S_IFREG }
    public var isSymlink: Bool { fileType == S_IFLNK }
    public var deviceMajor: UInt32 { UInt32((st_rdev >> 8) & 0xfff) | UInt32((st_rdev >> 32) & ~0xfff) }
    public var deviceMinor: UInt32 { UInt32(st_rdev & 0xff) | UInt32((st_rdev >> 12) & ~0xff) }
}

/// Bytes a file or a tree takes on disk.
public enum DiskUsage {
    /// Allocated bytes (st_blocks) of everything under `path`, each inode counted once.
    public static func allocatedBytes(_ path: String) throws -> UInt64 { try FileSystem.allocatedBytes(path) }
}
