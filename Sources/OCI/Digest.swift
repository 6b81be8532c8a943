import Crypto
import Foundation
import Host

/// A content digest, `sha256:` and 64 lowercase hex digits. Only SHA-256 is written or accepted.
public struct Digest: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public let hex: String

    public init(parsing string: String) throws {
        let parts = string.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, parts[0] == "sha256", parts[1].count == 64,
              parts[1].allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) })
        else { throw OCIError.invalidDigest(string) }
        hex = String(parts[1])
    }

    public init(_ hash: SHA256.Digest) {
        hex = hash.map { String(format: "%02x", $0) }.joined()
    }

    /// The digest of some bytes.
    public static func of(_ data: some DataProtocol) -> Digest { Digest(SHA256.hash(data: data)) }

    /// The digest and size of a regular file's content, streamed (not held in memory).
    public static func ofFile(_ path: String) throws -> (digest: Digest, size: Int64) {
        var hasher = Hasher()
        var total: Int64 = 0
        try FileSystem.readChunks(path) { chunk in
            hasher.update(chunk)
            total += Int64(chunk.count)
        }
        return (hasher.finalize(), total)
    }

    public var description: String { "sha256:" + hex }
    public var algorithm: String { "sha256" }

    public static func < (a: Digest, b: Digest) -> Bool { a.hex < b.hex }

    public init(from decoder: Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: s)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension Digest {
    /// A SHA-256 taken of bytes as they stream past (a blob being written, a tar being read),
    /// finished as a `Digest`.
    public struct Hasher {
        private var sha = SHA256()

        public init() {}

        public mutating func update(_ bytes: UnsafeRawBufferPointer) { sha.update(bufferPointer: bytes) }

        /// The digest of every byte given so far.
        public func finalize() -> Digest { Digest(sha.finalize()) }
    }
}
