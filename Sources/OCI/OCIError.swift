import Foundation

/// Everything the OCI module refuses or fails at, naming the layout, the file or the blob.
public enum OCIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed on a path.
    case io(path: String, operation: String, errno: Int32)
    /// A blob's content does not hash to the digest it is stored under or referenced by.
    case digestMismatch(path: String, expected: String, actual: String)
    case sizeMismatch(path: String, digest: String, expected: Int64, actual: Int64)
    case blobNotFound(layout: String, digest: String)
    case invalidDigest(String)
    /// A JSON document of a layout that does not decode or breaks the image spec.
    case invalidDocument(path: String, reason: String)
    case tagNotFound(layout: String, tag: String)
    case notALayout(path: String, reason: String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .io(path, operation, errno):
            return "\(path): \(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .digestMismatch(path, expected, actual):
            return "\(path): content hashes to \(actual), expected \(expected)"
        case let .sizeMismatch(path, digest, expected, actual):
            return "\(path): blob \(digest) has \(actual) bytes, its descriptor says \(expected)"
        case let .blobNotFound(layout, digest):
            return "\(layout): blob \(digest) not found"
        case let .invalidDigest(d):
            return "invalid digest \"\(d)\": expected sha256: followed by 64 lowercase hex digits"
        case let .invalidDocument(path, reason):
            return "\(path): \(reason)"
        case let .tagNotFound(layout, tag):
            return "\(layout): no image tagged \"\(tag)\" in index.json"
        case let .notALayout(path, reason):
            return "\(path): not an OCI image layout: \(reason)"
        case let .invalidArgument(message):
            return message
        }
    }
}
