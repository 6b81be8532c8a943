import Foundation

/// A new empty file in the temporary folder, created exclusively (mkstemp), removed by `remove()`.
public struct TemporaryFile: Sendable {
    public let path: String

    public init(prefix: String) throws {
        // mkstemp replaces the six trailing X.
        var template = Array((NSTemporaryDirectory() + "/\(prefix)-" + String(repeating: "X", count: 6)).utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw HostError.systemCall(path: NSTemporaryDirectory(), operation: "mkstemp", errno: errno) }
        close(fd)
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    public func remove() { unlink(path) }
}

/// A new folder in the temporary folder (or in `parent`) that only its owner can enter (mkdtemp, 0700).
public enum TemporaryFolder {
    public static func make(prefix: String, in parent: String? = nil) throws -> String {
        var base = parent ?? NSTemporaryDirectory()
        if base.hasSuffix("/") { base.removeLast() }
        // mkdtemp replaces the six trailing X.
        var template = Array("\(base)/\(prefix)-\(String(repeating: "X", count: 6))".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw HostError.systemCall(path: base, operation: "mkdtemp", errno: errno)
        }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
