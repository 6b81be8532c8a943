import Foundation

/// Everything Layers refuses or fails at, naming the file and the entry.
public enum LayersError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A system call failed on a path.
    case io(path: String, operation: String, errno: Int32)
    /// A blob's content does not hash to the digest it is stored under or referenced by.
    case digestMismatch(path: String, expected: String, actual: String)
    /// libarchive reported an error while reading or writing a tar.
    case archive(path: String, entry: String?, message: String)
    /// A layer entry that would land outside the root: `..`, an absolute path, a path or link
    /// through a symlink, a hardlink to something outside the layer.
    case unsafeEntry(path: String, entry: String, reason: String)
    /// A layer entry this process may not create (a device node without root, an unknown type).
    case unsupportedEntry(path: String, entry: String, reason: String)
    case compression(path: String, message: String)
    case driverUnavailable(driver: String, reason: String)
    case driverFailure(driver: String, layer: String, message: String)
    case layerNotFound(driver: String, layer: String)
    case layerExists(driver: String, layer: String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .io(path, operation, errno):
            return "\(path): \(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .digestMismatch(path, expected, actual):
            return "\(path): content hashes to \(actual), expected \(expected)"
        case let .archive(path, entry, message):
            return "\(path)\(entry.map { ": entry \($0)" } ?? ""): \(message)"
        case let .unsafeEntry(path, entry, reason):
            return "\(path): entry \(entry) refused: \(reason)"
        case let .unsupportedEntry(path, entry, reason):
            return "\(path): entry \(entry) not applied: \(reason)"
        case let .compression(path, message):
            return "\(path): compression failed: \(message)"
        case let .driverUnavailable(driver, reason):
            return "storage driver \(driver) does not work here: \(reason)"
        case let .driverFailure(driver, layer, message):
            return "storage driver \(driver), layer \(layer): \(message)"
        case let .layerNotFound(driver, layer):
            return "storage driver \(driver): no layer \(layer)"
        case let .layerExists(driver, layer):
            return "storage driver \(driver): layer \(layer) already exists"
        case let .invalidArgument(message):
            return message
        }
    }
}
