import Foundation
import Host
import QcowIO
import OCI
import Layers
import RecipePlan
import ImageBuild
import Measure
import RuntimeSuite

/// What `imgbench check` cannot work with: a report or budget that cannot be read or does not
/// mean anything. Each names the file and the place in it.
public enum GateError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(path: String, message: String)
    /// `place` is `file:line:column` or `file: at json.path`.
    case invalid(place: String, message: String)

    public var description: String {
        switch self {
        case let .unreadable(path, message): return "\(path): \(message)"
        case let .invalid(place, message): return "\(place): \(message)"
        }
    }
}
