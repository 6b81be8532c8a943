import CLinux
import Foundation

/// Mounts and FUSE daemons, each registered with `Cleanup` for as long as it is
/// up, so that an error or Ctrl-C never leaves one behind.
public enum Mounts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var registered: [String: Int] = [:]

    /// mount(2) directly, for kernel filesystems.
    public static func mount(source: String, target: String, type: String, options: String) throws {
        guard CLinux.mount(source, target, type, 0, options) == 0 else {
            throw HostError.systemCall(path: target, operation: "mount -t \(type) -o \(options)", errno: errno)
        }
        track(target)
    }

    /// Registers a mount made by a helper (a FUSE daemon, mount(8) with a loop device). The
    /// target is kept absolute, so that it is released whatever the working folder is then.
    public static func track(_ target: String) {
        let target = LexicalPath.absolute(target)
        let id = Cleanup.register("mount \(target)") { _ = try? Mounts.unmountNow(target) }
        lock.withLock { registered[target] = id }
    }

    /// Unmounts (a FUSE mount's daemon exits with it; a loop device set up by mount(8) with
    /// autoclear is detached with it). Busy mounts are retried, then detached lazily.
    public static func unmount(_ target: String) throws {
        let target = LexicalPath.absolute(target)
        try unmountNow(target)
        if let id = lock.withLock({ registered.removeValue(forKey: target) }) { Cleanup.unregister(id) }
    }

    private static func unmountNow(_ target: String) throws {
        for attempt in 0..<20 {
            if umount2(target, 0) == 0 { return }
            let e = errno
            if e == EINVAL || e == ENOENT { return } // not mounted
            if e != EBUSY || attempt == 19 {
                if e == EBUSY, umount2(target, Int32(MNT_DETACH)) == 0 { return }
                throw HostError.systemCall(path: target, operation: "umount", errno: e)
            }
            usleep(50_000)
        }
    }

    /// Whether this process mounted `target` and has not unmounted it: a store that several
    /// builds use at once holds mounts of each, and one releases only its own.
    public static func isTracked(_ target: String) -> Bool {
        lock.withLock { registered[LexicalPath.absolute(target)] != nil }
    }

    /// Whether something is mounted on `target`, relative or absolute.
    public static func isMounted(_ target: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        let t = tablePath(target)
        return text.split(separator: "\n").contains { line in
            let f = line.split(separator: " ")
            return f.count > 1 && f[1].replacingOccurrences(of: "\\040", with: " ") == t
        }
    }

    /// `target` as the mount table spells it: absolute, through no symlink. Only its folder is
    /// resolved: the target itself may be the root of a FUSE mount whose daemon died or hangs.
    static func tablePath(_ target: String) -> String {
        let abs = LexicalPath.absolute(target)
        guard abs != "/", let slash = abs.lastIndex(of: "/") else { return abs }
        let folder = slash == abs.startIndex ? "/" : String(abs[..<slash])
        let real = (try? RootedPath.real(folder)) ?? folder
        return (real == "/" ? "" : real) + abs[slash...]
    }

    public static func kernelHas(_ fs: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { $0.split(separator: "\t").last.map(String.init) == fs }
    }

    public static var fuseUsable: Bool { access("/dev/fuse", R_OK | W_OK) == 0 && kernelHas("fuse") }

    /// Bytes free for an unprivileged writer on the filesystem holding `path` (statfs(2)).
    public static func freeBytes(_ path: String) throws -> UInt64 {
        var fs = statfs()
        guard statfs(path, &fs) == 0 else { throw HostError.systemCall(path: path, operation: "statfs", errno: errno) }
        return UInt64(fs.f_bavail) * UInt64(fs.f_bsize)
    }

    /// The bytes in use on the filesystem holding `path` (statfs(2): all blocks less free ones).
    public static func usedBytes(_ path: String) throws -> UInt64 {
        var fs = statfs()
        guard statfs(path, &fs) == 0 else { throw HostError.systemCall(path: path, operation: "statfs", errno: errno) }
        return (UInt64(fs.f_blocks) - UInt64(fs.f_bfree)) * UInt64(fs.f_bsize)
    }

    /// The filesystem type magic of the filesystem holding `path` (statfs(2) `f_type`).
    public static func filesystemType(_ path: String) throws -> Int {
        var fs = statfs()
        guard statfs(path, &fs) == 0 else { throw HostError.systemCall(path: path, operation: "statfs", errno: errno) }
        return Int(fs.f_type)
    }
}

extension Mounts {
    /// The mount points at or below `folder`, deepest first (the order to unmount them in).
    public static func mountpoints(under folder: String) -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return [] }
        let absolute = folder.hasPrefix("/") ? folder : FileManager.default.currentDirectoryPath + "/" + folder
        let prefix = LexicalPath.join("/", absolute)
        let points = text.split(separator: "\n").compactMap { line -> String? in
            let f = line.split(separator: " ")
            guard f.count > 1 else { return nil }
            let p = f[1].replacingOccurrences(of: "\\040", with: " ")
            return p == prefix || p.hasPrefix(prefix + "/") ? p : nil
        }
        return points.sorted { $0.count > $1.count }
    }
}

extension FileSystem {
    /// syncfs(2) on the filesystem holding `path`: writes back what is cached and reports a
    /// write that failed since (a full disk under a loop device shows here, not at write(2)).
    public static func syncFilesystem(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw HostError.systemCall(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        guard imgbench_syncfs(fd) == 0 else { throw HostError.systemCall(path: path, operation: "syncfs (writing the disk back)", errno: errno) }
    }
}
