import Host
import RecipePlan

/// Everything a build refuses or fails at, naming the step or the file. A program that failed is
/// `HostError`, which names the program.
public enum BuildError: Error, Equatable, Sendable, CustomStringConvertible {
    case recipe(RecipeError)
    case stepFailed(step: String, location: SourceLocation, status: Int32, outputTail: String)
    case needsRoot(String)
    case invalid(String)
    /// Something failed while a thing was made or written (a full disk, a failed write): what it
    /// was, and the error, which names the file.
    case failed(what: String, reason: String)

    public var description: String {
        switch self {
        case let .recipe(e):
            return e.description
        case let .stepFailed(step, location, status, tail):
            return "\(location): step failed (exit \(status)): \(step)" + (tail.isEmpty ? "" : "\n--- last lines of its output ---\n" + tail)
        case let .needsRoot(what):
            return "\(what) needs root"
        case let .invalid(message):
            return message
        case let .failed(what, reason):
            return "\(what): \(reason)"
        }
    }

    /// Runs `body`; an error that is not already a build error is said with `what` was being
    /// made or written.
    static func naming<T>(_ what: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as BuildError {
            throw e
        } catch {
            throw BuildError.failed(what: what(), reason: HostError.line(error))
        }
    }
}
