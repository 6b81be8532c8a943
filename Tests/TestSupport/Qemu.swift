import Foundation
import Testing

/// The qemu tools the cross-checks need (`qemu-img`, `qemu-io`). A missing tool fails the test
/// that needs it, with the way to install it: these checks must not pass silently.
public enum Qemu {
    public static func tool(_ name: String) throws -> String { try HostTool.path(name, package: "qemu-utils") }

    @discardableResult
    public static func img(_ args: String...) throws -> ProcessResult { try img(args) }
    @discardableResult
    public static func img(_ args: [String]) throws -> ProcessResult { try runProcess(try tool("qemu-img"), args) }

    /// Runs qemu-img and requires exit status 0.
    @discardableResult
    public static func imgOK(_ args: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
        let r = try img(args)
        #expect(r.status == 0, "qemu-img \(args.joined(separator: " ")): exit \(r.status): \(r.output)", sourceLocation: sourceLocation)
        return r
    }

    /// Runs qemu-io commands on an image (each a `-c` argument) and requires success.
    public static func io(_ image: String, format: String = "qcow2", _ commands: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        var args = ["-f", format]
        for c in commands { args += ["-c", c] }
        args.append(image)
        let r = try runProcess(try tool("qemu-io"), args)
        #expect(r.status == 0 && !r.output.contains("failed"), "qemu-io \(commands) on \(image): \(r.output)", sourceLocation: sourceLocation)
    }

    /// `qemu-img check --output=json`: its exit status and counts.
    public struct Check: Sendable, CustomStringConvertible {
        public var status: Int32
        public var leaks: Int
        public var corruptions: Int
        public var checkErrors: Int
        public var raw: String
        public var description: String { "exit \(status), \(corruptions) corruptions, \(leaks) leaks, \(checkErrors) check errors: \(raw)" }
    }

    public static func check(_ image: String) throws -> Check {
        let r = try img("check", "--output=json", image)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        return Check(status: r.status, leaks: json["leaks"] as? Int ?? 0, corruptions: json["corruptions"] as? Int ?? 0,
                     checkErrors: json["check-errors"] as? Int ?? 0, raw: r.output)
    }

    /// `qemu-img check` finds nothing at all: exit 0, no leaks, no corruptions.
    public static func expectClean(_ image: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let c = try check(image)
        #expect(c.status == 0 && c.leaks == 0 && c.corruptions == 0 && c.checkErrors == 0,
                "qemu-img check \(image): \(c)", sourceLocation: sourceLocation)
    }

    /// `qemu-img compare` says the guest contents are identical.
    public static func expectIdentical(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try img("compare", a, b)
        #expect(r.status == 0, "qemu-img compare \(a) \(b): exit \(r.status): \(r.output)", sourceLocation: sourceLocation)
    }

    /// The guest contents as qemu-img reads them (`qemu-img convert -O raw`).
    public static func flatten(_ image: String, to raw: String) throws -> [UInt8] {
        try imgOK("convert", "-O", "raw", image, raw)
        return try readFile(raw)
    }

    /// `qemu-img map --output=json` extents.
    public static func map(_ image: String) throws -> [[String: Any]] {
        let r = try imgOK("map", "--output=json", image)
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [[String: Any]] ?? []
    }
}
