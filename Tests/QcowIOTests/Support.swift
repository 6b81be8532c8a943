import Foundation
import Testing
@testable import QcowIO

// Shared helpers of the QcowIO tests: temporary folders, running qemu-img/qemu-io, random raw
// images, and byte edits of image files.

/// A fresh folder under the system temp directory, removed when the value goes away.
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ label: String = "qcowio") throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { "\(path)/\(name)" }
}

/// What a finished process left behind.
struct ProcessResult: Sendable {
    var status: Int32
    var stdout: String
    var stderr: String
    var output: String { stdout + stderr }
}

/// Runs a program to completion, capturing its output (through files, so nothing blocks).
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], cwd: String? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let dir = FileManager.default.temporaryDirectory.path
    let tag = UUID().uuidString
    let outPath = "\(dir)/proc-\(tag).out", errPath = "\(dir)/proc-\(tag).err"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
    }
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    try out.close()
    try err.close()
    return ProcessResult(status: p.terminationStatus,
                         stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
}

/// The qemu tools the cross-checks need. A missing tool fails the test that needs it, with the
/// way to install it: these checks must not pass silently.
enum Qemu {
    static func tool(_ name: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        Issue.record("\(name) is not installed: run scripts/install-deps.sh (package qemu-utils)")
        throw MissingTool(name: name)
    }

    struct MissingTool: Error, CustomStringConvertible {
        var name: String
        var description: String { "\(name) is not installed (scripts/install-deps.sh installs qemu-utils)" }
    }

    @discardableResult
    static func img(_ args: String...) throws -> ProcessResult { try runProcess(try tool("qemu-img"), args) }
    static func img(_ args: [String]) throws -> ProcessResult { try runProcess(try tool("qemu-img"), args) }

    /// Runs qemu-img and requires exit status 0.
    @discardableResult
    static func imgOK(_ args: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
        let r = try runProcess(try tool("qemu-img"), args)
        #expect(r.status == 0, "qemu-img \(args.joined(separator: " ")) exited \(r.status): \(r.output)", sourceLocation: sourceLocation)
        return r
    }

    /// Runs qemu-io commands on an image (each a `-c` argument) and requires success.
    static func io(_ image: String, format: String = "qcow2", _ commands: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        var args = ["-f", format]
        for c in commands { args += ["-c", c] }
        args.append(image)
        let r = try runProcess(try tool("qemu-io"), args)
        #expect(r.status == 0 && !r.output.contains("failed"), "qemu-io \(commands) on \(image): \(r.output)", sourceLocation: sourceLocation)
    }

    /// `qemu-img check --output=json`: its exit status and counts.
    struct Check: Sendable, CustomStringConvertible {
        var status: Int32
        var leaks: Int
        var corruptions: Int
        var checkErrors: Int
        var raw: String
        var description: String { "exit \(status), \(corruptions) corruptions, \(leaks) leaks, \(checkErrors) check errors: \(raw)" }
    }

    static func check(_ image: String) throws -> Check {
        let r = try img("check", "--output=json", image)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        return Check(status: r.status, leaks: json["leaks"] as? Int ?? 0, corruptions: json["corruptions"] as? Int ?? 0,
                     checkErrors: json["check-errors"] as? Int ?? 0, raw: r.output)
    }

    /// `qemu-img check` finds nothing at all: exit 0, no leaks, no corruptions.
    static func expectClean(_ image: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let c = try check(image)
        #expect(c.status == 0 && c.leaks == 0 && c.corruptions == 0 && c.checkErrors == 0,
                "qemu-img check \(image): \(c)", sourceLocation: sourceLocation)
    }

    /// `qemu-img compare` says the guest contents are identical.
    static func expectIdentical(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try img("compare", a, b)
        #expect(r.status == 0, "qemu-img compare \(a) \(b): exit \(r.status): \(r.output)", sourceLocation: sourceLocation)
    }

    /// The guest contents as qemu-img reads them (`qemu-img convert -O raw`).
    static func flatten(_ image: String, to raw: String) throws -> [UInt8] {
        try imgOK("convert", "-O", "raw", image, raw)
        return try readFile(raw)
    }
}

/// Deterministic pseudo-random bytes (SplitMix64), so a failing case repeats.
struct SeededRandom: RandomNumberGenerator, Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var v = next()
            for _ in 0..<8 where i < n { out[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
        }
        return out
    }

    mutating func below(_ n: UInt64) -> UInt64 { n == 0 ? 0 : next() % n }
}

/// The contents of a disk that exercise a converter: runs of zeros, incompressible random data,
/// compressible text-like data, and single non-zero bytes in otherwise empty stretches.
func makeDiskContents(size: Int, seed: UInt64) -> [UInt8] {
    var rng = SeededRandom(seed: seed)
    var b = [UInt8](repeating: 0, count: size)
    var at = 0
    while at < size {
        let run = min(size - at, Int(1 + rng.below(96 * 1024)))
        switch rng.below(4) {
        case 0: break // zeros
        case 1: b.replaceSubrange(at..<(at + run), with: rng.bytes(run))
        case 2:
            let word = Array("imgbench qcow2 line \(rng.below(1000))\n".utf8)
            for i in 0..<run { b[at + i] = word[i % word.count] }
        default:
            b[at + Int(rng.below(UInt64(run)))] = UInt8(1 + rng.below(255))
        }
        at += run
    }
    return b
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readFile(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Every guest byte of an image, read through QcowIO.
func readAll(_ image: DiskImage, chunk: Int = 1 << 20) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: Int(image.virtualSize))
    var at = 0
    while at < out.count {
        let n = min(chunk, out.count - at)
        try out.withUnsafeMutableBytes { try image.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[at..<(at + n)]), at: UInt64(at)) }
        at += n
    }
    return out
}

/// The first offset where two byte arrays differ (nil when equal).
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    if a == b { return nil }
    let n = min(a.count, b.count)
    for i in 0..<n where a[i] != b[i] { return i }
    return n
}

// MARK: - Byte edits of image files

func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
    let f = try BlockFile(path: path, mode: .readWrite)
    try f.write(bytes, at: offset)
    try f.close()
}

func patchBE64(_ path: String, at offset: UInt64, _ v: UInt64) throws {
    var b = [UInt8](repeating: 0, count: 8)
    b.putBE64(v, at: 0)
    try patch(path, at: offset, b)
}

func patchBE32(_ path: String, at offset: UInt64, _ v: UInt32) throws {
    var b = [UInt8](repeating: 0, count: 4)
    b.putBE32(v, at: 0)
    try patch(path, at: offset, b)
}

func readBE64(_ path: String, at offset: UInt64) throws -> UInt64 {
    let f = try BlockFile(path: path, mode: .readOnly)
    return try f.readExactly(8, at: offset, what: "test read").be64(0)
}

func truncateFile(_ path: String, to size: UInt64) throws {
    let f = try BlockFile(path: path, mode: .readWrite)
    try f.truncate(to: size)
    try f.close()
}

/// The host offset of the refcount of `cluster`, and its width in bytes (refcount order 3 to 6).
func refcountLocation(_ path: String, cluster: UInt64) throws -> (offset: UInt64, width: Int) {
    let img = try QcowImage(path: path)
    let perBlock = UInt64(img.geometry.refcountsPerBlock)
    let width = (1 << img.geometry.refcountOrder) / 8
    precondition(width >= 1, "byte-wide refcounts only")
    let block = try readBE64(path, at: img.header.refcountTableOffset + (cluster / perBlock) * 8) & ~UInt64(0x1FF)
    return (block + (cluster % perBlock) * UInt64(width), width)
}

/// Overwrites the stored refcount of a host cluster (byte-wide refcounts).
func setRefcount(_ path: String, cluster: UInt64, to value: UInt64) throws {
    let (offset, width) = try refcountLocation(path, cluster: cluster)
    var b = [UInt8](repeating: 0, count: width)
    for i in 0..<width { b[i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * (width - 1 - i))) }
    try patch(path, at: offset, b)
}

/// Replaces the backing file name in the header cluster with one of the same length.
func patchBackingName(_ path: String, to name: String) throws {
    let f = try BlockFile(path: path, mode: .readOnly)
    let h = try Qcow2Header.parse(try f.readExactly(112, at: 0, what: "header"), path: path)
    precondition(Int(h.backingFileSize) == name.utf8.count, "same-length names only")
    try patch(path, at: h.backingFileOffset, Array(name.utf8))
}
