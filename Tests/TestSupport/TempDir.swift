import Foundation
import Host

/// The system's temporary folder, without a trailing slash.
public let tmpBase = NSTemporaryDirectory().hasSuffix("/") ? String(NSTemporaryDirectory().dropLast()) : NSTemporaryDirectory()

/// A fresh folder, `imgbench-LABEL-…` under the system's temporary folder (or under `parent`),
/// removed by `cleanup()` or, at the latest, when the value goes away.
public final class TempDir: @unchecked Sendable {
    public let path: String

    /// A new folder under `parent` (default: the system's temporary folder).
    public init(_ label: String = "test", in parent: String? = nil) throws {
        path = "\(parent ?? tmpBase)/imgbench-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// A folder whose path is all lowercase (image references made from it must be).
    public init(lowercase label: String) throws {
        path = tmpBase + "/imgbench-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(path)
    }

    deinit { cleanup() }

    /// The path of `name` in the folder (not created).
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Creates the folder `name` (and its parents) in the folder; returns its path.
    public func sub(_ name: String) throws -> String {
        let p = path + "/" + name
        try FileSystem.makeDirectories(p)
        return p
    }

    /// Removes the folder and everything in it.
    public func cleanup() { try? FileSystem.removeTree(path) }
}
