import Host
import QcowIO
import OCI
import Layers
import RecipePlan
/// Everything a build refuses or fails at, naming the step, the file or the command.
public enum BuildError: Error, Equatable, Sendable, CustomStringConvertible {
    case recipe(RecipeError)
    /// A command the build ran failed: its argument vector, exit status and the tail of its output.
    case commandFailed(what: String, argv: [String], status: Int32, outputTail: String)
    case commandTimedOut(what: String, argv: [String], seconds: Double)
    case missingTool(String, package: String)
    case stepFailed(step: String, location: SourceLocation, status: Int32, outputTail: String)
    case needsRoot(String)
    case io(path: String, message: String)
    case invalid(String)

    public var description: String {
        switch self {
        case let .recipe(e):
            return e.description
        case let .commandFailed(what, argv, status, tail):
            return "\(what) failed (exit \(status)): \(argv.joined(separator: " "))" + (tail.isEmpty ? "" : "\n" + tail)
        case let .commandTimedOut(what, argv, seconds):
            return "\(what) did not finish within \(Int(seconds)) s: \(argv.joined(separator: " "))"
        case let .missingTool(tool, package):
            return "\(tool) is not installed (Debian package \(package); scripts/install-deps.sh installs it)"
        case let .stepFailed(step, location, status, tail):
            return "\(location): step failed (exit \(status)): \(step)" + (tail.isEmpty ? "" : "\n--- last lines of its output ---\n" + tail)
        case let .needsRoot(what):
            return "\(what) needs root"
        case let .io(path, message):
            return "\(path): \(message)"
        case let .invalid(message):
            return message
        }
    }
}
