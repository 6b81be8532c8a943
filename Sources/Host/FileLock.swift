import Foundation

/// An advisory lock on a file (flock(2)): shared or exclusive, held from `init` until `unlock()`
/// or deinit. The kernel drops it when the process ends however it ends (SIGKILL included), so a
/// lock is never left behind by a dead process, and whatever a dead holder half made is known to
/// be abandoned once its lock can be taken. The descriptor is close-on-exec: a program started
/// while the lock is held (a daemon that outlives the step) does not keep it.
public final class FileLock {
    public enum Mode: Sendable { case shared, exclusive }

    public let path: String
    public private(set) var mode: Mode
    private var fd: Int32

    /// Takes the lock, waiting for it; `onWait` is called once first when it is held by another.
    public init(_ path: String, mode: Mode, onWait: ((String) -> Void)? = nil) throws {
        self.path = path
        self.mode = mode
        var waited = false
        while true {
            fd = try FileLock.open(path)
            if !FileLock.take(fd, mode, wait: false) {
                if !waited { onWait?(path) }
                waited = true
                guard FileLock.take(fd, mode, wait: true) else {
                    let e = errno
                    close(fd)
                    throw HostError.systemCall(path: path, operation: "flock", errno: e)
                }
            }
            if FileLock.isCurrent(fd, path) { return }
            close(fd)
        }
    }

    /// Takes the lock if nobody holds a conflicting one; nil when it is busy.
    public init?(trying path: String, mode: Mode) {
        guard let fd = try? FileLock.open(path) else { return nil }
        guard FileLock.take(fd, mode, wait: false), FileLock.isCurrent(fd, path) else {
            close(fd)
            return nil
        }
        self.path = path
        self.mode = mode
        self.fd = fd
    }

    /// Changes an exclusive lock into a shared one (Linux converts it under one spin lock, so no
    /// other holder gets in between).
    public func downgrade() throws {
        guard fd >= 0, mode == .exclusive else { return }
        guard FileLock.take(fd, .shared, wait: true) else { throw HostError.systemCall(path: path, operation: "flock", errno: errno) }
        mode = .shared
    }

    /// Makes a shared lock exclusive if nobody else holds it; false (and the lock lost: flock
    /// drops the old lock first) when another holder has it. For a last user's release.
    public func tryExclusive() -> Bool {
        guard fd >= 0 else { return false }
        if FileLock.take(fd, .exclusive, wait: false) {
            mode = .exclusive
            return true
        }
        unlock()
        return false
    }

    /// Sets the lock file's modification time to now: when its entry was last used.
    public func touch() {
        guard fd >= 0 else { return }
        futimens(fd, nil)
    }

    public func unlock() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }

    deinit { unlock() }

    private static func open(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw HostError.systemCall(path: path, operation: "open", errno: errno) }
        return fd
    }

    /// Whether the locked file is still the one at `path`: whoever removes an entry removes its
    /// lock file while holding it, and a waiter that then gets the lock of the removed file must
    /// open the path again.
    private static func isCurrent(_ fd: Int32, _ path: String) -> Bool {
        var a = stat(), b = stat()
        return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    private static func take(_ fd: Int32, _ mode: Mode, wait: Bool) -> Bool {
        let op = (mode == .shared ? LOCK_SH : LOCK_EX) | (wait ? 0 : LOCK_NB)
        while true {
            if flock(fd, op) == 0 { return true }
            if errno != EINTR { return false }
        }
    }
}
