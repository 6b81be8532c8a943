import CLinux
import Foundation

/// Mounts, FUSE daemons and external commands, each registered with `Cleanup` for as long as it is
/// up, so that an error or Ctrl-C never leaves one behind.
public enum Mounts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var registered: [String: Int] = [:]

    /// mount(2) directly, for kernel filesystems.
    static func mount(source: String, target: String, type: String, options: String) throws {
        guard CLinux.mount(source, target, type, 0, options) == 0 else {
            throw LayersError.io(path: target, operation: "mount -t \(type) -o \(options)", errno: errno)
        }
        track(target)
    }

    /// Registers a mount made by a helper (a FUSE daemon, mount(8) with a loop device).
    static func track(_ target: String) {
        let id = Cleanup.register("mount \(target)") { _ = try? Mounts.unmountNow(target) }
        lock.withLock { registered[target] = id }
    }

    /// Unmounts (a FUSE mount's daemon exits with it; a loop device set up by mount(8) with
    /// autoclear is detached with it). Busy mounts are retried, then detached lazily.
    static func unmount(_ target: String) throws {
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
                throw LayersError.io(path: target, operation: "umount", errno: e)
            }
            usleep(50_000)
        }
    }

    static func isMounted(_ target: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        let t = (target as NSString).standardizingPath
        return text.split(separator: "\n").contains { line in
            let f = line.split(separator: " ")
            return f.count > 1 && f[1].replacingOccurrences(of: "\\040", with: " ") == t
        }
    }

    /// Runs a program to completion; a non-zero exit is an error carrying its output.
    @discardableResult
    static func run(_ args: [String]) throws -> String {
        try run(args, directory: nil, defaultSignals: false)
    }

    /// Runs a program; `defaultSignals` gives it the default handling of SIGINT and SIGTERM even
    /// when this process ignores them (as the command line does while it cleans up), so that a
    /// Ctrl-C stops a build step too.
    @discardableResult
    static func run(_ args: [String], directory: String?, defaultSignals: Bool) throws -> String {
        // Spawned directly and waited for with waitpid, its output in an unlinked temporary file:
        // a FUSE daemon forks and keeps its inherited descriptors, so neither a pipe nor a wait
        // that watches them would ever end.
        var template = Array((NSTemporaryDirectory() + "/imgbench-cmd-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw LayersError.io(path: NSTemporaryDirectory(), operation: "mkstemp", errno: errno) }
        unlink(stringFromCArray(template))
        defer { Glibc.close(fd) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fd, 1)
        posix_spawn_file_actions_adddup2(&actions, fd, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        if defaultSignals {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGINT)
            sigaddset(&set, SIGTERM)
            posix_spawnattr_setsigdefault(&attr, &set)
            posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF))
        }
        let argv: [UnsafeMutablePointer<CChar>?] = (["/usr/bin/env"] + (directory.map { ["-C", $0] } ?? []) + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, "/usr/bin/env", &actions, &attr, argv, environ)
        guard r == 0 else {
            throw LayersError.commandFailed(command: args.joined(separator: " "), status: -1, output: String(cString: strerror(r)))
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        var out = Data()
        lseek(fd, 0, SEEK_SET)
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        let text = String(decoding: out, as: UTF8.self)
        let exited = status & 0x7f == 0
        if defaultSignals && !exited && (status & 0x7f == SIGINT || status & 0x7f == SIGTERM) {
            throw LayersError.interrupted(signal: status & 0x7f)
        }
        let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard code == 0 else {
            throw LayersError.commandFailed(command: args.joined(separator: " "), status: code, output: text)
        }
        return text
    }
    /// Runs a shell script in a directory (a build step in a writable root); its output is
    /// returned, and a failure is an error carrying it.
    public static func shell(_ script: String, in directory: String) throws -> String {
        try run(["sh", "-ec", script], directory: directory, defaultSignals: true)
    }

    /// The absolute path of a program on PATH, if there is one.
    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if access(p, X_OK) == 0 { return p }
        }
        return nil
    }

    static func kernelHas(_ fs: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8) else { return false }
        return text.split(separator: "\n").contains { $0.split(separator: "\t").last.map(String.init) == fs }
    }

    static var fuseUsable: Bool { access("/dev/fuse", R_OK | W_OK) == 0 && kernelHas("fuse") }
}
