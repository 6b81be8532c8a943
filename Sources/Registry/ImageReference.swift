import Foundation
import OCI

/// A reference to an image in a registry, as docker and skopeo write it:
/// `REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`.
///
/// The first component is the registry when it has a `.` or a `:` or is `localhost`; otherwise
/// the registry is Docker Hub (`docker.io`, reached at `registry-1.docker.io`) and a repository
/// without a `/` is under `library/`. Without a tag or digest the tag is `latest`.
public struct ImageReference: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The registry as written: host, and port when given (`127.0.0.1:5000`).
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: Digest?

    public init(registry: String, repository: String, tag: String? = nil, digest: Digest? = nil) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    public init(parsing text: String) throws {
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            digest = try Self.parseDigest(String(rest[rest.index(after: at)...]), in: text)
            rest = rest[..<at]
        }
        if let colon = rest.lastIndex(of: ":"), !rest[colon...].contains("/") {
            tag = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
        }
        (registry, repository) = Self.split(String(rest))
        try validate(text)
    }

    /// Whether `text` names a registry's image rather than something else (a file, a Debian
    /// suite), as docker tells them apart: its first component names a host (a `.`, a `:` or
    /// `localhost`), or it has a digest (`debian@sha256:...` is Docker Hub's image).
    public static func looksLikeRegistryReference(_ text: String) -> Bool {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        let namesHost = parts.count == 2 && (parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost")
        return namesHost || text.contains("@")
    }

    /// What the manifests endpoint is asked for: the digest when there is one, else the tag.
    public var manifestReference: String { digest?.description ?? tag ?? "latest" }

    /// The same repository under another tag (and no digest).
    public func tagged(_ tag: String) -> ImageReference {
        ImageReference(registry: registry, repository: repository, tag: tag)
    }

    public var description: String {
        "\(registry)/\(repository)" + (tag.map { ":\($0)" } ?? "") + (digest.map { "@\($0)" } ?? "")
    }

    /// The host the registry's API answers at (Docker Hub's differs from its name).
    public var endpoint: String { registry == "docker.io" ? "registry-1.docker.io" : registry }

    /// The host without its port.
    public var host: String { Self.host(of: registry) }

    static func host(of registry: String) -> String {
        if registry.hasPrefix("["), let end = registry.firstIndex(of: "]") {
            return String(registry[registry.index(after: registry.startIndex)..<end])
        }
        return String(registry.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
    }

    /// Whether the registry is this machine: `localhost` or 127.0.0.0/8 (or ::1), where plain
    /// HTTP is allowed as docker allows it.
    public var isLoopback: Bool {
        let h = host
        return h == "localhost" || h == "::1" || (h.hasPrefix("127.") && h.split(separator: ".").count == 4)
    }

    static func split(_ name: String) -> (String, String) {
        let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
        if parts.count == 2, parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost" {
            return (parts[0], parts[1])
        }
        return ("docker.io", parts.count == 1 ? "library/" + name : name)
    }

    static func parseDigest(_ s: String, in text: String) throws -> Digest {
        do { return try Digest(parsing: s) } catch {
            throw RegistryError.invalidReference(text, reason: "\(s) is not a sha256: digest of 64 lowercase hex digits")
        }
    }

    func validate(_ text: String) throws {
        guard !registry.isEmpty, !Self.host(of: registry).isEmpty else {
            throw RegistryError.invalidReference(text, reason: "no registry host")
        }
        for component in repository.split(separator: "/", omittingEmptySubsequences: false) {
            guard Self.isRepositoryComponent(component) else {
                throw RegistryError.invalidReference(text, reason: "repository \"\(repository)\": components are lowercase letters and digits, joined by . _ __ or dashes")
            }
        }
        if let tag, !Self.isTag(tag) {
            throw RegistryError.invalidReference(text, reason: "tag \"\(tag)\": up to 128 letters, digits, _ . and -, not starting with . or -")
        }
    }

    static func isRepositoryComponent(_ c: Substring) -> Bool {
        let alnum = { (ch: Character) in ("a"..."z").contains(ch) || ("0"..."9").contains(ch) }
        guard let first = c.first, let last = c.last, alnum(first), alnum(last) else { return false }
        return c.allSatisfy { alnum($0) || $0 == "." || $0 == "_" || $0 == "-" }
            && !c.contains("..") && !c.contains("___") && !c.contains("._") && !c.contains("_.")
    }

    static func isTag(_ t: String) -> Bool {
        guard let first = t.first, t.count <= 128, first != ".", first != "-" else { return false }
        return t.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-") }
    }
}
