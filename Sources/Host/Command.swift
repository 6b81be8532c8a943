import Foundation

/// Runs other programs: the one place that starts a process. Their output is kept (the last
/// lines, for error messages) and can be streamed line by line; a timeout stops them with SIGTERM,
/// then SIGKILL; Ctrl-C stops them through `Cleanup` before what they work in is released.
///
/// Started with posix_spawn and reaped with waitpid: the exit of the program itself is what ends
/// the wait, not the closing of every descriptor it handed down.
public enum Command {
    public struct Result: Sendable {
        public var status: Int32
        /// Standard output and error, interleaved, at most `outputLimit` bytes from the end.
        public var output: String
        public var timedOut: Bool
        /// The signal that ended the program, if one did (`status` is then 128 + it).
        public var signal: Int32?

        public init(status: Int32, output: String, timedOut: Bool, signal: Int32? = nil) {
            self.status = status
            self.output = output
            self.timedOut = timedOut
            self.signal = signal
        }
    }

    /// How a program is started.
    public struct Attributes: Sendable {
        /// The environment; nil keeps this process's.
        public var environment: [String: String]?
        /// The working directory; nil keeps this process's.
        public var directory: String?
        /// Gives the program the default handling of SIGINT and SIGTERM, even while this process
        /// ignores them (as the command line does while it cleans up), so that a Ctrl-C stops it
        /// at once. A FUSE daemon is started without, so that it outlives the Ctrl-C until its
        /// mount is released in order.
        public var defaultSignals = true

        public init(environment: [String: String]? = nil, directory: String? = nil, defaultSignals: Bool = true) {
            self.environment = environment
            self.directory = directory
            self.defaultSignals = defaultSignals
        }
    }

    /// Runs `argv` to completion. A program that leaves a daemon behind (which keeps its output
    /// open) must write to `logFile` instead of a pipe, or the run would wait for the daemon.
    /// Setting `stopWhen` (from another thread) stops the program as a timeout does.
    @discardableResult
    public static func run(_ argv: [String], environment: [String: String]? = nil,
                           input: Data? = nil, timeout: Double? = nil, outputLimit: Int = 256 << 10, logFile: String? = nil,
                           stopWhen: StopFlag? = nil, onOutput: (@Sendable (String) -> Void)? = nil) throws -> Result {
        try run(argv, attributes: Attributes(environment: environment), input: input, timeout: timeout,
                outputLimit: outputLimit, logFile: logFile, stopWhen: stopWhen, onOutput: onOutput)
    }

    @discardableResult
    public static func run(_ argv: [String], attributes: Attributes,
                           input: Data? = nil, timeout: Double? = nil, outputLimit: Int = 256 << 10, logFile: String? = nil,
                           stopWhen: StopFlag? = nil, onOutput: (@Sendable (String) -> Void)? = nil) throws -> Result {
        let child = try Spawned(argv, attributes: attributes, input: input, logFile: logFile)
        let collected = OutputTail(limit: outputLimit)
        child.collect(into: collected, onOutput: onOutput)
        child.feed(input)
        return child.wait(timeout: timeout, stopWhen: stopWhen, collected: collected, logFile: logFile)
    }

    /// Replaces this process with `argv` (its program found on PATH), keeping the environment
    /// plus `environment`: how a command re-enters itself in new namespaces. Returns only by
    /// throwing, when the program cannot be started.
    public static func exec(_ argv: [String], environment: [String: String] = [:]) throws -> Never {
        let program = try resolve(argv[0])
        for (k, v) in environment { setenv(k, v, 1) }
        var args = argv.map { strdup($0) } + [nil]
        execv(program, &args)
        let e = errno
        for a in args { free(a) }
        throw HostError.systemCall(path: program, operation: "execv", errno: e)
    }

    /// Runs `argv` and fails with its output's tail unless it exits 0.
    @discardableResult
    public static func check(_ what: String, _ argv: [String], environment: [String: String]? = nil,
                             input: Data? = nil, timeout: Double? = nil, logFile: String? = nil) throws -> String {
        let r = try run(argv, environment: environment, input: input, timeout: timeout, logFile: logFile)
        if r.timedOut { throw HostError.commandTimedOut(what: what, argv: argv, seconds: timeout ?? 0) }
        guard r.status == 0 else {
            throw HostError.commandFailed(what: what, argv: argv, status: r.status, outputTail: tail(r.output, lines: 20))
        }
        return r.output
    }

    /// Runs a program that may leave a daemon behind (a FUSE mount helper, mount(8) with a loop
    /// device) and returns its output; a non-zero exit is an error carrying it, a SIGINT or
    /// SIGTERM that stopped it (with `defaultSignals`) is `HostError.interrupted`. The output goes
    /// through an unlinked temporary file: a daemon keeps its inherited descriptors, so a pipe
    /// would never close.
    @discardableResult
    public static func output(_ argv: [String], directory: String? = nil, defaultSignals: Bool = false) throws -> String {
        let log = try TemporaryFile(prefix: "imgbench-cmd")
        defer { log.remove() }
        let r = try run(argv, attributes: Attributes(directory: directory, defaultSignals: defaultSignals), logFile: log.path)
        if defaultSignals, let s = r.signal, s == SIGINT || s == SIGTERM { throw HostError.interrupted(signal: s) }
        guard r.status == 0 else {
            throw HostError.commandFailed(what: (argv[0] as NSString).lastPathComponent, argv: argv, status: r.status,
                                          outputTail: tail(r.output, lines: 20))
        }
        return r.output
    }

    /// Runs a shell script in a directory (a build step in a writable root); its output is
    /// returned, and a failure is an error carrying it. Ctrl-C stops it.
    public static func shell(_ script: String, in directory: String) throws -> String {
        try output(["sh", "-ec", script], directory: directory, defaultSignals: true)
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
        if let p = which(program) { return p }
        throw HostError.missingTool(program, package: packageProviding[program] ?? program)
    }

    /// The absolute path of a program on PATH or in the sbin folders, if there is one.
    public static func which(_ program: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/local/sbin:/usr/sbin:/sbin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    public static func exists(_ program: String) -> Bool { which(program) != nil }

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

/// A started program: its pid, the ends of its pipes this process keeps, and the cleanup action
/// that stops it on Ctrl-C.
private final class Spawned {
    let pid: pid_t
    private let outFD: Int32
    private let inFD: Int32
    private let stopped = StopFlag()
    private var stopOnInterrupt = 0

    /// Spawns `argv`: standard input from `input` (a pipe) or /dev/null, standard output and error
    /// into `logFile` or a pipe.
    init(_ argv: [String], attributes: Command.Attributes, input: Data?, logFile: String?) throws {
        let program = attributes.directory.map { ["/usr/bin/env", "-C", $0] + argv } ?? argv
        let path = try Command.resolve(program[0])
        var outFDs: [Int32] = [-1, -1]
        var inFDs: [Int32] = [-1, -1]
        var logFD: Int32 = -1
        if let lf = logFile {
            logFD = open(lf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard logFD >= 0 else { throw HostError.io(path: lf, message: String(cString: strerror(errno))) }
        } else {
            guard Self.cloexecPipe(&outFDs) else { throw HostError.io(path: argv[0], message: "pipe: \(String(cString: strerror(errno)))") }
        }
        if input != nil {
            guard Self.cloexecPipe(&inFDs) else { throw HostError.io(path: argv[0], message: "pipe: \(String(cString: strerror(errno)))") }
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
        let env = (attributes.environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // No signal blocked in the program, whichever thread (a Dispatch worker blocks some)
        // starts it.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK)
        if attributes.defaultSignals {
            var defaults = sigset_t()
            sigemptyset(&defaults)
            sigaddset(&defaults, SIGINT)
            sigaddset(&defaults, SIGTERM)
            posix_spawnattr_setsigdefault(&attr, &defaults)
            flags |= Int32(POSIX_SPAWN_SETSIGDEF)
        }
        posix_spawnattr_setflags(&attr, Int16(flags))
        var pid: pid_t = 0
        let rc = withCStringArray(program) { cargv in
            withCStringArray(env) { cenv in posix_spawn(&pid, path, &actions, &attr, cargv, cenv) }
        }
        for fd in [outFDs[1], inFDs[0], logFD] where fd >= 0 { close(fd) }
        guard rc == 0 else {
            for fd in [outFDs[0], inFDs[1]] where fd >= 0 { close(fd) }
            throw HostError.io(path: path, message: "cannot start: \(String(cString: strerror(rc)))")
        }
        self.pid = pid
        outFD = outFDs[0]
        inFD = inFDs[1]
        // Interrupted (Ctrl-C) while it runs: the program is stopped before what it works in
        // (a mount, a loop device) is released.
        let stopped = self.stopped
        stopOnInterrupt = Cleanup.register("stop \((argv[0] as NSString).lastPathComponent) (pid \(pid))") {
            stopped.set()
            Command.stop(pid)
        }
    }

    /// Reads the program's output on a thread of its own until every holder of the pipe closed it.
    func collect(into collected: OutputTail, onOutput: (@Sendable (String) -> Void)?) {
        guard outFD >= 0 else {
            collected.finish()
            return
        }
        let fd = outFD
        Thread {
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
        }.start()
    }

    /// Writes `input` to the program's standard input and closes it.
    func feed(_ input: Data?) {
        guard let i = input, inFD >= 0 else { return }
        i.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = write(inFD, b.baseAddress! + done, b.count - done)
                if n <= 0 { break }
                done += n
            }
        }
        close(inFD)
    }

    /// Waits for the program to exit, stopping it at the timeout or when `stopWhen` is set.
    func wait(timeout: Double?, stopWhen: StopFlag?, collected: OutputTail, logFile: String?) -> Command.Result {
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
                Command.stop(pid)
            }
            if let s = stopWhen, s.isSet, !stoppedOnRequest, !timedOut {
                stoppedOnRequest = true
                Command.stop(pid)
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
        let signal: Int32? = (status & 0x7f) == 0 ? nil : status & 0x7f
        var exit: Int32 = signal.map { 128 + $0 } ?? (status >> 8) & 0xff
        // A program stopped on interruption did not finish, whatever waitpid saw (the stopper may
        // have reaped it, leaving status 0 here): never a success.
        // Likewise a program stopped at its timeout.
        if (stopped.isSet || timedOut) && exit == 0 { exit = 128 + SIGTERM }
        return Command.Result(status: exit, output: collected.text, timedOut: timedOut, signal: signal)
    }

    /// A pipe whose ends are not inherited by the programs started (but for the dup2'd copies).
    static func cloexecPipe(_ fds: inout [Int32]) -> Bool {
        guard pipe(&fds) == 0 else { return false }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return true
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
public func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let ptrs = strings.map { strdup($0) } + [nil]
    defer { for p in ptrs { free(p) } }
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}
