import Foundation

// Whole-file reads and writes, and byte edits in place.

public func readFile(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

public func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Writes `text` (UTF-8) as the whole file.
public func write(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// Overwrites `bytes` at `offset` (extending the file when past its end).
public func patch(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
    let h = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? h.close() }
    try h.seek(toOffset: offset)
    try h.write(contentsOf: Data(bytes))
}

/// The big-endian 64-bit number at `offset`.
public func readBE64(_ path: String, at offset: UInt64) throws -> UInt64 {
    let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? h.close() }
    try h.seek(toOffset: offset)
    let d = try h.read(upToCount: 8) ?? Data()
    guard d.count == 8 else { throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: path]) }
    return d.reduce(0) { $0 << 8 | UInt64($1) }
}

/// The absolute `path` as seen from the absolute folder `folder`: up through `..` to the folder
/// they share (not to the root, where the same text would also name the file from /).
public func relativePath(_ path: String, from folder: String) -> String {
    let p = path.split(separator: "/"), f = folder.split(separator: "/")
    let shared = zip(p, f).prefix { $0 == $1 }.count
    return (Array(repeating: "..", count: f.count - shared) + p.dropFirst(shared)).joined(separator: "/")
}
