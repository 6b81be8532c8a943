import Foundation
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The machine the work runs on.
public enum Processors {
    /// Processors this process may run on (at least 1; an affinity mask such as taskset's counts):
    /// the worker count for parallel compression and conversion.
    public static var count: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Runs `body` on the calling thread as background work, such as a capture nobody waits for
    /// yet, which should take only the CPU time the rest leaves: at `nice` (Linux keeps a nice
    /// value per thread), and in the process's idle cpu cgroup where there is one
    /// (`IdleCPUGroup`). A nice value alone does not do it: it weighs only against the threads
    /// of its own group (the process's autogroup), while a build step runs in a cgroup of its
    /// own, which the scheduler weighs against that whole group, and does not let preempt it at
    /// once. The thread's nice value and cgroup are as before when `body` returns. Best effort:
    /// a refusal changes nothing.
    public static func inBackground<T>(nice: Int32, _ body: () throws -> T) rethrows -> T {
        let tid = id_t(imgbench_gettid())
        let which = __priority_which_t(PRIO_PROCESS.rawValue)
        errno = 0
        let before = getpriority(which, tid)
        let had = errno == 0
        _ = setpriority(which, tid, nice)
        let joined = IdleCPUGroup.join()
        defer {
            if joined { IdleCPUGroup.leave() }
            if had { _ = setpriority(which, tid, before) }
        }
        return try body()
    }
}

/// A cpu cgroup of this process whose `cpu.idle` is 1 (cgroup v1's cpu controller, Linux 5.15
/// and later), for threads of background work (`Processors.inBackground`): the scheduler runs
/// them only when nothing else wants the CPU, and a waking task of any other group preempts them
/// at once. It is `CPU/OWN/imgbench-idle-PID`, where OWN is this process's cpu cgroup; made when
/// a first thread joins, removed when the last leaves, and by `Cleanup` on an interruption
/// (its threads moved back first). Without a writable cgroup v1 cpu controller (cgroup v2 moves
/// single threads only in threaded subtrees; a user without root) threads keep their nice
/// value alone.
public enum IdleCPUGroup {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var current: (dir: String, parent: String, members: Int, cleanup: Int)?
    /// The threads in the group (not yet taken out by `promote`).
    nonisolated(unsafe) private static var threads: Set<Int32> = []
    nonisolated(unsafe) private static var unavailable = false

    /// The group's folder while it exists.
    public static var folder: String? { lock.withLock { current?.dir } }

    /// Takes the threads now in the group out of it, back to the process's own cgroup, at the
    /// nice value they have (10): something the build waits for has come to depend on them, and
    /// at idle priority it would wait on threads that run only when nothing else does, while at
    /// their own nice value they would take as much CPU as the other side's work of a build of
    /// both images. Threads that join later are background work as usual; each thread gets its
    /// own nice value back when its background work ends.
    public static func promoteAll() { promote(only: nil) }

    /// `promoteAll` for the threads of `only` (thread ids), or for every thread when nil.
    static func promote(only: Set<Int32>?) {
        lock.withLock {
            guard let c = current else { return }
            for tid in threads where only?.contains(tid) ?? true {
                _ = write(String(tid), to: c.parent + "/tasks")
                threads.remove(tid)
            }
        }
    }

    /// The calling thread's id.
    static var thisThread: Int32 { imgbench_gettid() }

    /// Moves the calling thread into the group, making the group first; false where that cannot
    /// be done.
    static func join() -> Bool {
        var madeNow: String?
        let joined = lock.withLock { () -> Bool in
            if unavailable { return false }
            if current == nil {
                guard let made = make() else {
                    unavailable = true
                    return false
                }
                current = (made.dir, made.parent, 0, -1)
                madeNow = made.dir
            }
            guard let c = current, write(String(imgbench_gettid()), to: c.dir + "/tasks") else { return false }
            current?.members += 1
            threads.insert(imgbench_gettid())
            return true
        }
        // Registered outside the lock: once the process is exiting, Cleanup runs it at once.
        if let dir = madeNow {
            let id = Cleanup.register("remove the idle cpu cgroup \(dir)") { IdleCPUGroup.removeNow() }
            lock.withLock { if current?.dir == dir { current?.cleanup = id } }
        }
        return joined
    }

    /// Moves the calling thread back to the process's own cgroup; the last to leave removes the
    /// group.
    static func leave() {
        lock.withLock {
            guard let c = current else { return }
            _ = write(String(imgbench_gettid()), to: c.parent + "/tasks")
            threads.remove(imgbench_gettid())
            current?.members -= 1
            if c.members - 1 <= 0 {
                rmdir(c.dir)
                if c.cleanup >= 0 { Cleanup.unregister(c.cleanup) }
                current = nil
            }
        }
    }

    /// Cleanup's action: every thread still in the group back to the process's cgroup, and the
    /// group removed.
    private static func removeNow() {
        lock.withLock {
            guard let c = current else { return }
            let tasks = (try? String(contentsOfFile: c.dir + "/tasks", encoding: .utf8)) ?? ""
            for t in tasks.split(separator: "\n") { _ = write(String(t), to: c.parent + "/tasks") }
            rmdir(c.dir)
            current = nil
            threads = []
        }
    }

    /// The group's folder, made, and its parent: nil without a cgroup v1 cpu controller this
    /// process can write, or a kernel without `cpu.idle`.
    private static func make() -> (dir: String, parent: String)? {
        guard let own = ownPath(), let mount = controllerMount() else { return nil }
        let parent = mount + (own == "/" ? "" : own)
        removeStale(in: parent)
        let dir = parent + "/imgbench-idle-\(getpid())"
        guard mkdir(dir, 0o755) == 0 || errno == EEXIST else { return nil }
        guard write("1", to: dir + "/cpu.idle") else {
            rmdir(dir)
            return nil
        }
        return (dir, parent)
    }

    /// The groups of imgbench processes that are gone (killed before they could remove theirs):
    /// an empty cgroup folder is removed with rmdir, one with tasks left is not.
    static func removeStale(in parent: String) {
        for name in (try? FileSystem.children(parent)) ?? [] where name.hasPrefix("imgbench-idle-") {
            guard let pid = pid_t(name.dropFirst("imgbench-idle-".count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { rmdir(parent + "/" + name) }
        }
    }

    /// This process's cgroup in the v1 hierarchy that has the cpu controller ("4:cpu,cpuacct:/x").
    private static func ownPath() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            if parts.count == 3, parts[1].split(separator: ",").contains("cpu") { return String(parts[2]) }
        }
        return nil
    }

    /// Where the v1 cpu controller is mounted (mountinfo: a `cgroup` filesystem whose super
    /// options name `cpu`).
    private static func controllerMount() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let after = halves[1].split(separator: " ")
            let before = halves[0].split(separator: " ")
            guard after.count >= 3, after[0] == "cgroup", before.count >= 5,
                  after[2].split(separator: ",").contains("cpu") else { continue }
            return String(before[4])
        }
        return nil
    }

    private static func write(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }
}
