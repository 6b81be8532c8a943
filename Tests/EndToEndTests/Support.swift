import Foundation
import IMGBenchCLI
import QcowIO
import Testing
import TestSupport

// Helpers of the end-to-end tests: running the built `imgbench` (to completion or left running),
// random raw images, byte edits of image files. Temporary folders, the process runner, the qemu
// tools and the seeded generator are in TestSupport.

/// A child process left running, its output going to files, for tests that signal it part-way or
/// must not hang. Started with posix_spawn (descriptors above 2 closed) and reaped with waitpid:
/// its own exit ends the wait, even if it leaves a daemon behind (which would keep a Foundation
/// `Process` "running" forever through the descriptor it inherits).
final class RunningProcess {
    let pid: pid_t
    let io: CapturedOutput
    /// The signal that ended it, once it ended by one.
    private(set) var signal: Int32?
    private var status: Int32?

    /// `environment` adds to (or replaces in) the test runner's environment; `cwd` is the child's
    /// working folder (the runner's when nil).
    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], cwd: String? = nil) throws {
        io = try CapturedOutput()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, io.out.fileDescriptor, 1)
        posix_spawn_file_actions_adddup2(&actions, io.err.fileDescriptor, 2)
        try Self.addGlibcActions(&actions, cwd: cwd)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for e in env { free(e) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, env)
        guard rc == 0 else { throw MissingTool(description: "cannot start \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+) and _addchdir_np (2.29+), which
    /// Swift's Glibc module does not import: the test runner's other descriptors are not handed
    /// down, and the child starts in `cwd`.
    private static func addGlibcActions(_ actions: inout posix_spawn_file_actions_t, cwd: String?) throws {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        typealias ChangeDirectory = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
        let libc = UnsafeMutableRawPointer(bitPattern: 0)
        if let sym = dlsym(libc, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(sym, to: CloseFrom.self)(&actions, 3)
        }
        guard let cwd else { return }
        guard let sym = dlsym(libc, "posix_spawn_file_actions_addchdir_np"),
              unsafeBitCast(sym, to: ChangeDirectory.self)(&actions, cwd) == 0 else {
            throw MissingTool(description: "cannot start a child in \(cwd): glibc has no posix_spawn_file_actions_addchdir_np")
        }
    }

    /// Reaps the child if it has exited; true while it runs.
    var isRunning: Bool {
        guard status == nil else { return false }
        var st: Int32 = 0
        guard waitpid(pid, &st, WNOHANG) == pid else { return true }
        if st & 0x7f == 0 {
            status = (st >> 8) & 0xff
        } else {
            signal = st & 0x7f
            status = 128 + (st & 0x7f)
        }
        return false
    }

    /// Polls until `condition` holds on what the child wrote so far, or it exits, or `seconds` pass.
    @discardableResult
    func wait(upTo seconds: Double, until condition: (_ stdout: String, _ stderr: String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition(io.stdoutSoFar, io.stderrSoFar) { return true }
            if !isRunning { return condition(io.stdoutSoFar, io.stderrSoFar) }
            usleep(50_000)
        }
        return false
    }

    /// Waits for the child to exit, up to `seconds`; then SIGKILLs it (so a test never hangs) and
    /// returns nil. The status of a child ended by a signal is 128 + the signal.
    func finish(within seconds: Double) -> ProcessResult? {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning && Date() < deadline { usleep(50_000) }
        if isRunning {
            kill(pid, SIGKILL)
            while isRunning { usleep(50_000) }
            _ = io.finish(status: -1)
            return nil
        }
        return io.finish(status: status ?? -1)
    }
}

/// The `imgbench` executable built next to the test bundle (`swift build` / `swift test` put both
/// in the same folder), or `$IMGBENCH` when set.
enum IMGBenchBinary {
    static func path() throws -> String {
        if let p = ProcessInfo.processInfo.environment["IMGBENCH"], !p.isEmpty { return p }
        var candidates: [String] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append((exe as NSString).deletingLastPathComponent + "/imgbench")
        }
        candidates.append((CommandLine.arguments[0] as NSString).deletingLastPathComponent + "/imgbench")
        for c in candidates where FileManager.default.isExecutableFile(atPath: c) { return c }
        Issue.record("the imgbench executable is not built next to the tests (looked at \(candidates)); run swift build first or set IMGBENCH")
        throw MissingTool(description: "imgbench executable not found")
    }
}

/// Runs `imgbench ARGS...`.
@discardableResult
func imgbench(_ args: String...) throws -> ProcessResult { try runProcess(try IMGBenchBinary.path(), args) }

/// A raw disk of `size` bytes: runs of zeros, random bytes and repeated text.
func writeRandomRawImage(_ path: String, size: Int, seed: UInt64) throws {
    try writeFile(path, SeededRandom.diskContents(size: size, seed: seed, shortestRun: 4096, runSpread: 128 * 1024,
                                                  lineNumbers: 100, line: { "end to end \($0)\n" }, singleBytes: false))
}

func bigEndian(_ v: UInt64, bytes n: Int) -> [UInt8] {
    (0..<n).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * (n - 1 - $0))) }
}

/// Overwrites the stored 16-bit refcount of a host cluster of an image with 16-bit refcounts.
func setRefcount16(_ path: String, cluster: UInt64, to value: UInt16) throws {
    let img = try QcowImage(path: path)
    precondition(img.geometry.refcountOrder == 4)
    let perBlock = UInt64(img.geometry.refcountsPerBlock)
    let block = try readBE64(path, at: img.header.refcountTableOffset + (cluster / perBlock) * 8) & ~UInt64(0x1FF)
    try img.close()
    try patch(path, at: block + (cluster % perBlock) * 2, bigEndian(UInt64(value), bytes: 2))
}

/// Decodes JSON printed by imgbench.
func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(text.utf8))
}
