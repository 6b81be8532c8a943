import Foundation
import Testing
import QcowIO
import IMGBenchCLI

// Shared helpers of the end-to-end tests: temporary folders, running the built `imgbench` and the
// qemu tools, random raw images, byte edits of image files.

final class TempDir: @unchecked Sendable {
    let path: String

    /// A new folder under `parent` (default: the system's temporary folder).
    init(_ label: String = "e2e", in parent: String? = nil) throws {
        path = "\(parent ?? FileManager.default.temporaryDirectory.path)/imgbench-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { "\(path)/\(name)" }
}

struct ProcessResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
    var output: String { stdout + stderr }
    /// The non-empty lines of stderr.
    var errorLines: [Substring] { stderr.split(separator: "\n", omittingEmptySubsequences: true) }
}

/// Output files of a child process (files, so a chatty child never blocks on a full pipe).
struct CapturedOutput {
    let outPath: String
    let errPath: String
    let out: FileHandle
    let err: FileHandle

    init() throws {
        let base = "\(FileManager.default.temporaryDirectory.path)/imgbench-proc-\(UUID().uuidString)"
        outPath = base + ".out"
        errPath = base + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    }

    func attach(to p: Process) {
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
    }

    var stdoutSoFar: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderrSoFar: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    func finish(status: Int32) -> ProcessResult {
        try? out.close()
        try? err.close()
        let r = ProcessResult(status: status, stdout: stdoutSoFar,
                              stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
        return r
    }
}

@discardableResult
func runProcess(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    let io = try CapturedOutput()
    io.attach(to: p)
    try p.run()
    p.waitUntilExit()
    return io.finish(status: p.terminationStatus)
}

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

    /// `environment` adds to (or replaces in) the test runner's environment.
    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        io = try CapturedOutput()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, io.out.fileDescriptor, 1)
        posix_spawn_file_actions_adddup2(&actions, io.err.fileDescriptor, 2)
        // glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), which Swift's Glibc module
        // does not import: the test runner's other descriptors are not handed down.
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        if let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(sym, to: CloseFrom.self)(&actions, 3)
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for e in env { free(e) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, nil, argv, env)
        guard rc == 0 else { throw MissingTool(description: "cannot start \(executable): \(String(cString: strerror(rc)))") }
        pid = child
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

struct MissingTool: Error, CustomStringConvertible {
    var description: String
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

/// A program the tests cross-check against; a missing one is a recorded failure naming its package.
enum HostTool {
    static func path(_ name: String, package: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin", "/sbin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        Issue.record("\(name) is not installed: run scripts/install-deps.sh (package \(package))")
        throw MissingTool(description: "\(name) is not installed (scripts/install-deps.sh installs \(package))")
    }

    /// Runs `name ARGS...`.
    @discardableResult
    static func run(_ name: String, package: String, _ args: [String]) throws -> ProcessResult {
        try runProcess(try path(name, package: package), args)
    }
}

enum Qemu {
    static func tool(_ name: String) throws -> String { try HostTool.path(name, package: "qemu-utils") }

    @discardableResult
    static func img(_ args: String...) throws -> ProcessResult { try runProcess(try tool("qemu-img"), args) }

    @discardableResult
    static func imgOK(_ args: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
        let r = try runProcess(try tool("qemu-img"), args)
        #expect(r.status == 0, "qemu-img \(args.joined(separator: " ")): exit \(r.status): \(r.output)", sourceLocation: sourceLocation)
        return r
    }

    static func io(_ image: String, _ commands: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        var args = ["-f", "qcow2"]
        for c in commands { args += ["-c", c] }
        args.append(image)
        let r = try runProcess(try tool("qemu-io"), args)
        #expect(r.status == 0 && !r.output.contains("failed"), "qemu-io \(commands): \(r.output)", sourceLocation: sourceLocation)
    }

    struct Check: CustomStringConvertible {
        var status: Int32
        var leaks: Int
        var corruptions: Int
        var checkErrors: Int
        var raw: String
        var description: String { "exit \(status), \(corruptions) corruptions, \(leaks) leaks: \(raw)" }
    }

    static func check(_ image: String) throws -> Check {
        let r = try img("check", "--output=json", image)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        return Check(status: r.status, leaks: json["leaks"] as? Int ?? 0, corruptions: json["corruptions"] as? Int ?? 0,
                     checkErrors: json["check-errors"] as? Int ?? 0, raw: r.output)
    }

    /// `qemu-img map --output=json` extents.
    static func map(_ image: String) throws -> [[String: Any]] {
        let r = try imgOK("map", "--output=json", image)
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]] ?? []
    }
}

/// The stress writer's generator, so that a seed names the same data in the tool and the tests.
typealias SeededRandom = SplitMix64

extension SplitMix64 {
    mutating func below(_ n: UInt64) -> UInt64 { n == 0 ? 0 : next() % n }

    mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var v = next()
            for _ in 0..<8 where i < n { out[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
        }
        return out
    }
}

/// A raw disk of `size` bytes: runs of zeros, random bytes and repeated text.
func writeRandomRawImage(_ path: String, size: Int, seed: UInt64) throws {
    var rng = SeededRandom(seed: seed)
    var b = [UInt8](repeating: 0, count: size)
    var at = 0
    while at < size {
        let run = min(size - at, Int(4096 + rng.below(128 * 1024)))
        switch rng.below(3) {
        case 0: break
        case 1: b.replaceSubrange(at..<(at + run), with: rng.bytes(run))
        default:
            let word = Array("end to end \(rng.below(100))\n".utf8)
            for i in 0..<run { b[at + i] = word[i % word.count] }
        }
        at += run
    }
    try Data(b).write(to: URL(fileURLWithPath: path))
}

func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
    let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    try h.seek(toOffset: offset)
    try h.write(contentsOf: Data(bytes))
    try h.close()
}

func bigEndian(_ v: UInt64, bytes n: Int) -> [UInt8] {
    (0..<n).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * (n - 1 - $0))) }
}

func readBE64(_ path: String, at offset: UInt64) throws -> UInt64 {
    let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? h.close() }
    try h.seek(toOffset: offset)
    let d = try h.read(upToCount: 8) ?? Data()
    return d.reduce(0) { $0 << 8 | UInt64($1) }
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
