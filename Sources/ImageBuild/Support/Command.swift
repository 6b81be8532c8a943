import Foundation
import Layers

/// Runs other programs: their output is kept (the last lines, for error messages) and can be
/// streamed line by line; a timeout stops them with SIGTERM, then SIGKILL.
public enum Command {
    public struct Result: Sendable {
        public var status: Int32
        /// Standard output and error, interleaved, at most `outputLimit` bytes from the end.
        public var output: String
        public var timedOut: Bool
    }

    /// Runs `argv` to completion. A program that leaves a daemon behind (which keeps its output
    /// open) must write to `logFile` instead of a pipe, or the run would wait for the daemon.
    /// Setting `stopWhen` (from another thread) stops the program as a timeout does.
    ///
    /// Started with posix_spawn and reaped with waitpid: the exit of the program itself is what
    /// ends the wait, not the closing of every descriptor it handed down.
    @discardableResult
    public static func run(_ argv: [String], environment: [String: String]? = nil,
                           input: Data? = nil, timeout: Double? = nil, outputLimit: Int = 256 << 10, logFile: String? = nil,
                           stopWhen: StopFlag? = nil, onOutput: (@Sendable (String) -> Void)? = nil) throws -> Result {
        let path = try resolve(argv[0])
        var outFDs: [Int32] = [-1, -1]
        var inFDs: [Int32] = [-1, -1]
        var logFD: Int32 = -1
        if let lf = logFile {
            logFD = open(lf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard logFD >= 0 else { throw BuildError.io(path: lf, message: String(cString: strerror(errno))) }
        } else {
            guard cloexecPipe(&outFDs) else { throw BuildError.io(path: argv[0], message: "pipe: \(String(cString: strerror(errno)))") }
        }
        if input != nil {
            guard cloexecPipe(&inFDs) else { throw BuildError.io(path: argv[0], message: "pipe: \(String(cString: strerror(errno)))") }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input != nil {
            posix_spawn_file_actions_adddup2(&actions, inFDs[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        let sink = logFD >= 0 ? logFD : outFDs[1]
        posix_spawn_file_actions_adddup2(&actions, sink, 1)
        posix_spawn_file_actions_adddup2(&actions, sink, 2)
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        // The command line ignores SIGINT and SIGTERM while it cleans up; programs it starts get
        // the default handling back, so that a Ctrl-C or a stop ends them at once.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGTERM)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = withCStringArray(argv) { cargv in
            withCStringArray(env) { cenv in posix_spawn(&pid, path, &actions, &attr, cargv, cenv) }
        }
        for fd in [outFDs[1], inFDs[0], logFD] where fd >= 0 { close(fd) }
        guard rc == 0 else {
            for fd in [outFDs[0], inFDs[1]] where fd >= 0 { close(fd) }
            throw BuildError.io(path: path, message: "cannot start: \(String(cString: strerror(rc)))")
        }
        // Interrupted (Ctrl-C) while it runs: the program is stopped before what it works in
        // (a mount, a loop device) is released.
        let child = pid
        let stopped = StopFlag()
        let stopOnInterrupt = Cleanup.register("stop \((argv[0] as NSString).lastPathComponent) (pid \(pid))") {
            stopped.set()
            Command.stop(child)
        }
        let collected = OutputTail(limit: outputLimit)
        if outFDs[0] >= 0 {
            let fd = outFDs[0]
            let reader = Thread {
                var buf = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = read(fd, &buf, buf.count)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    let d = Data(buf[0..<n])
                    collected.append(d)
                    if let cb = onOutput { cb(String(decoding: d, as: UTF8.self)) }
                }
                close(fd)
                collected.finish()
            }
            reader.start()
        } else {
            collected.finish()
        }
        if let i = input {
            i.withUnsafeBytes { b in
                var done = 0
                while done < b.count {
                    let n = write(inFDs[1], b.baseAddress! + done, b.count - done)
                    if n <= 0 { break }
                    done += n
                }
            }
            close(inFDs[1])
        }
        var status: Int32 = 0
        var timedOut = false
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        let polls = deadline != nil || stopWhen != nil
        var stoppedOnRequest = false
        while true {
            let r = waitpid(pid, &status, polls ? WNOHANG : 0)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if let d = deadline, Date() >= d, !timedOut, !stoppedOnRequest {
                timedOut = true
                stop(pid)
            }
            if let s = stopWhen, s.isSet, !stoppedOnRequest, !timedOut {
                stoppedOnRequest = true
                stop(pid)
            }
            if polls { usleep(20_000) }
        }
        Cleanup.unregister(stopOnInterrupt)
        // Stopped by the cleanup of an interruption: the caller unwinds only once that cleanup
        // has released what the program worked in.
        if stopped.isSet { Cleanup.waitForRunAll() }
        // The reader ends when every holder of the pipe has closed it; a program's leftovers
        // get a moment, then the tail is taken as it is.
        collected.wait(upTo: 2)
        if let lf = logFile, let d = FileManager.default.contents(atPath: lf) { collected.append(d) }
        var exit: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        // A program stopped on interruption did not finish, whatever waitpid saw (the stopper may
        // have reaped it, leaving status 0 here): never a success.
        if stopped.isSet && exit == 0 { exit = 128 + SIGTERM }
        return Result(status: exit, output: collected.text, timedOut: timedOut)
    }

    /// A pipe whose ends are not inherited by the programs started (but for the dup2'd copies).
    static func cloexecPipe(_ fds: inout [Int32]) -> Bool {
        guard pipe(&fds) == 0 else { return false }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return true
    }


    /// Runs `argv` and fails with its output's tail unless it exits 0.
    @discardableResult
    public static func check(_ what: String, _ argv: [String], environment: [String: String]? = nil,
                             input: Data? = nil, timeout: Double? = nil, logFile: String? = nil) throws -> String {
        let r = try run(argv, environment: environment, input: input, timeout: timeout, logFile: logFile)
        if r.timedOut { throw BuildError.commandTimedOut(what: what, argv: argv, seconds: timeout ?? 0) }
        guard r.status == 0 else {
            throw BuildError.commandFailed(what: what, argv: argv, status: r.status, outputTail: tail(r.output, lines: 20))
        }
        return r.output
    }

    /// SIGTERM, a moment's grace, then SIGKILL (the caller reaps).
    static func stop(_ pid: pid_t) {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        let grace = Date().addingTimeInterval(3)
        while Date() < grace {
            if waitpid(pid, &status, WNOHANG) == pid {
                // Reaped here: leave a zombie-free state for the caller's waitpid, which then fails.
                return
            }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
    }

    /// The full path of a program, searched on PATH (and the sbin folders, which root needs).
    public static func resolve(_ program: String) throws -> String {
        if program.contains("/") { return program }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw BuildError.missingTool(program, package: packageProviding[program] ?? program)
    }

    public static func exists(_ program: String) -> Bool { (try? resolve(program)) != nil }

    static let packageProviding: [String: String] = [
        "mmdebstrap": "mmdebstrap", "qemu-storage-daemon": "qemu-system-x86", "qemu-system-x86_64": "qemu-system-x86",
        "qemu-img": "qemu-utils", "mkfs.ext4": "e2fsprogs", "losetup": "mount", "unshare": "util-linux",
        "mount": "mount", "umount": "mount", "runc": "runc", "skopeo": "skopeo", "taskset": "util-linux",
        "sysbench": "sysbench", "fio": "fio", "hpcc": "hpcc", "redis-server": "redis-server", "redis-benchmark": "redis-tools",
        "iperf3": "iperf3", "mariadbd": "mariadb-server",
    ]

    /// The last `lines` lines of `text`.
    public static func tail(_ text: String, lines: Int) -> String {
        let all = text.split(separator: "\n", omittingEmptySubsequences: false)
        return all.suffix(lines).joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A flag one thread sets and another reads.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public func set() { lock.withLock { value = true } }
    public var isSet: Bool { lock.withLock { value } }
}

/// Output kept from the end, bounded in bytes.
final class OutputTail: @unchecked Sendable {
    private let lock = NSCondition()
    private var data = Data()
    private var done = false
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func append(_ d: Data) {
        lock.lock()
        data.append(d)
        if data.count > limit { data.removeFirst(data.count - limit) }
        lock.unlock()
    }

    func finish() {
        lock.lock()
        done = true
        lock.broadcast()
        lock.unlock()
    }

    func wait(upTo seconds: Double) {
        lock.lock()
        let until = Date().addingTimeInterval(seconds)
        while !done && lock.wait(until: until) {}
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A NULL-terminated `char *const *` for the duration of `body`.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let ptrs = strings.map { strdup($0) } + [nil]
    defer { for p in ptrs { free(p) } }
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}
