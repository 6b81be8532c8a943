import Foundation

/// Everything Layers refuses or fails at, naming the file and the entry.
public enum LayersError: Error, Equatable, Sendable, CustomStringConvertible {
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
