import Foundation
import NIOHTTP1

/// Everything the registry client refuses or fails at. Each error names the registry and the
/// repository, and, for an answer the registry gave, the operation and the HTTP status.
public enum RegistryError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidReference(String, reason: String)
    /// The registry answered with a status the operation does not accept.
    case status(registry: String, repository: String, operation: String, status: Int, detail: String)
    /// No answer: the connection was refused, dropped or timed out, every attempt.
    case connection(registry: String, repository: String, operation: String, message: String, attempts: Int)
    /// An answer that breaks the distribution spec (a missing header, a digest that does not match).
    case invalidResponse(registry: String, repository: String, operation: String, message: String)
    /// A file the client reads for its settings: an auth file, a certificate folder.
    case settings(path: String, message: String)
    /// Something the registry does not hold.
    case notFound(registry: String, repository: String, what: String)

    public var description: String {
        switch self {
        case let .invalidReference(text, reason):
            return "\(text): not an image reference (REGISTRY/REPOSITORY:TAG or @sha256:...): \(reason)"
        case let .status(registry, repository, operation, status, detail):
            return "registry \(registry), repository \(repository): \(operation): HTTP \(status) \(Self.reason(status))"
                + (detail.isEmpty ? "" : ": \(detail)")
        case let .connection(registry, repository, operation, message, attempts):
            return "registry \(registry), repository \(repository): \(operation): \(message)"
                + (attempts > 1 ? " (\(attempts) attempts)" : "")
        case let .invalidResponse(registry, repository, operation, message):
            return "registry \(registry), repository \(repository): \(operation): \(message)"
        case let .settings(path, message):
            return "\(path): \(message)"
        case let .notFound(registry, repository, what):
            return "registry \(registry), repository \(repository): \(what) not found"
        }
    }

    /// The status as HTTP names it.
    static func reason(_ status: Int) -> String {
        HTTPResponseStatus(statusCode: status).reasonPhrase
    }
}
