import Foundation
import Testing

// Running programs from the tests: to completion with their output captured (`runProcess`, and the
// shell-style `run`/`sh`), and finding the host tools the tests cross-check against (`HostTool`).

/// What a finished process left behind.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }

    public var output: String { stdout + stderr }
    /// The non-empty lines of stderr.
    public var errorLines: [Substring] { stderr.split(separator: "\n", omittingEmptySubsequences: true) }
}

/// Output files of a child process (files, so a chatty child never blocks on a full pipe).
public struct CapturedOutput {
    public let outPath: String
    public let errPath: String
    public let out: FileHandle
    public let err: FileHandle

    /// `merged`: stdout and stderr go to one file, interleaved as the child wrote them (the result
    /// has all of it as stdout).
    public init(merged: Bool = false) throws {
        let base = "\(FileManager.default.temporaryDirectory.path)/imgbench-proc-\(UUID().uuidString)"
        outPath = base + ".out"
        errPath = merged ? outPath : base + ".err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        err = merged ? out : try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    }

    var merged: Bool { errPath == outPath }

    public func attach(to p: Process) {
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
    }

    public var stdoutSoFar: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    public var stderrSoFar: String { merged ? "" : (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Closes the files, reads what the child wrote and removes them.
    public func finish(status: Int32) -> ProcessResult {
        try? out.close()
        if !merged { try? err.close() }
        let r = ProcessResult(status: status, stdout: stdoutSoFar, stderr: stderrSoFar)
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
        return r
    }
}

/// Runs a program to completion, capturing its output (through files, so nothing blocks), with
/// stdin from /dev/null. `environment` adds to (or replaces in) the test runner's environment;
/// `mergingOutput` captures stdout and stderr interleaved, as one stream (in `stdout`).
@discardableResult
public func runProcess(_ executable: String, _ arguments: [String], cwd: String? = nil,
                       environment: [String: String]? = nil, mergingOutput: Bool = false) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, n in n } }
    let io = try CapturedOutput(merged: mergingOutput)
    io.attach(to: p)
    do {
        try p.run()
    } catch {
        _ = io.finish(status: -1)
        throw error
    }
    p.waitUntilExit()
    return io.finish(status: p.terminationStatus)
}

/// Runs a program found on PATH (`args[0]`), returning its exit status and what it printed on
/// stdout and stderr together.
@discardableResult
public func run(_ args: [String], cwd: String? = nil, environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    let r = try runProcess("/usr/bin/env", args, cwd: cwd, environment: environment, mergingOutput: true)
    return (r.status, r.output)
}

/// Runs a shell script (`sh -ec`).
@discardableResult
public func sh(_ script: String, cwd: String? = nil) throws -> (status: Int32, output: String) {
    try run(["sh", "-ec", script], cwd: cwd)
}

/// Whether `name` is on PATH.
public func haveTool(_ name: String) -> Bool {
    (try? run(["sh", "-c", "command -v \(name)"]).status) == 0
}

/// Whether the tests run as root.
public let isRoot = getuid() == 0

/// A program the tests need is not installed.
public struct MissingTool: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A program the tests cross-check against. A missing one fails the test that needs it, with the
/// package that installs it: these checks must not pass silently.
public enum HostTool {
    public static func path(_ name: String, package: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin", "/sbin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        Issue.record("\(name) is not installed: run scripts/install-deps.sh (package \(package))")
        throw MissingTool(description: "\(name) is not installed (scripts/install-deps.sh installs \(package))")
    }

    /// Runs `name ARGS...`.
    @discardableResult
    public static func run(_ name: String, package: String, _ args: [String]) throws -> ProcessResult {
        try runProcess(try path(name, package: package), args)
    }
}
