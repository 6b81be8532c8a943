import Foundation

/// Everything the host layer fails at: a program that failed, timed out or is missing, a system
/// call on a path, an interruption. Each names the program or the path.
public enum HostError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A program failed: what it was for, its argument vector, exit status and the tail of its output.
    case commandFailed(what: String, argv: [String], status: Int32, outputTail: String)
    case commandTimedOut(what: String, argv: [String], seconds: Double)
    case missingTool(String, package: String)
    /// A file operation failed on a path.
    case io(path: String, message: String)
    /// A system call failed on a path.
    case systemCall(path: String, operation: String, errno: Int32)
    /// A program was stopped by SIGINT or SIGTERM (Ctrl-C reaches the whole process group).
    case interrupted(signal: Int32)

    public var description: String {
        switch self {
        case let .commandFailed(what, argv, status, tail):
            return "\(what) failed (exit \(status)): \(argv.joined(separator: " "))" + (tail.isEmpty ? "" : "\n" + tail)
        case let .commandTimedOut(what, argv, seconds):
            return "\(what) did not finish within \(Int(seconds)) s: \(argv.joined(separator: " "))"
        case let .missingTool(tool, package):
            return "\(tool) is not installed (Debian package \(package); scripts/install-deps.sh installs it)"
        case let .io(path, message):
            return "\(path): \(message)"
        case let .systemCall(path, operation, errno):
            return "\(path): \(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .interrupted(signal):
            return "interrupted by signal \(signal)"
        }
    }
}

extension HostError {
    /// One line for a Foundation file error (FileManager's NSCocoaErrorDomain or a POSIX error):
    /// the file, the reason with its errno, and where it was being moved to; nil for any other
    /// error, whose own description already is such a line.
    public static func fileErrorLine(_ e: Error) -> String? {
        let ns = e as NSError
        guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return nil }
        let path = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        let underlying = (ns.userInfo[NSUnderlyingErrorKey] as? Error).map { $0 as NSError }
        let posix = ns.domain == NSPOSIXErrorDomain ? ns : underlying.flatMap { $0.domain == NSPOSIXErrorDomain ? $0 : nil }
        let reason = posix.map { "\(String(cString: strerror(Int32($0.code)))) (errno \($0.code))" } ?? ns.localizedDescription
        let destination = (ns.userInfo["NSDestinationFilePath"] as? String).map { " (moving it to \($0))" } ?? ""
        return "\(path ?? "a file"): \(reason)\(destination)"
    }

    /// Any error as one line: a Foundation file error as `fileErrorLine` gives it, else its own.
    public static func line(_ e: Error) -> String {
        fileErrorLine(e) ?? "\(e)"
    }
}
