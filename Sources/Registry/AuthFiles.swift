import Foundation

/// A user name and password for a registry, and the file they came from.
public struct Credentials: Sendable, Equatable {
    public var username: String
    public var password: String
    /// The auth file that holds them.
    public var source: String

    public init(username: String, password: String, source: String) {
        self.username = username
        self.password = password
        self.source = source
    }

    /// The value of an `Authorization: Basic` header.
    var basicHeader: String { "Basic " + Data("\(username):\(password)".utf8).base64EncodedString() }
}

/// The credential files users already have, in the order podman and skopeo read them:
/// `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`, then docker's
/// `~/.docker/config.json` (`$DOCKER_CONFIG/config.json`). Each is `{"auths": {KEY: {"auth":
/// base64("user:password")}}}` where KEY is a registry (`127.0.0.1:5000`, `https://index.docker.io/v1/`)
/// or, in containers-auth.json, a registry and a repository prefix (`quay.io/team`): the longest
/// key that matches wins, and the first file with a match. Credential helpers (`credsStore`,
/// `credHelpers`) are not run.
public enum AuthFiles {
    public static func candidates(environment env: [String: String]) -> [String] {
        var files: [String] = []
        if let f = env["REGISTRY_AUTH_FILE"], !f.isEmpty { files.append(f) }
        if let run = env["XDG_RUNTIME_DIR"], !run.isEmpty { files.append(run + "/containers/auth.json") }
        if let d = env["DOCKER_CONFIG"], !d.isEmpty {
            files.append(d + "/config.json")
        } else if let home = env["HOME"], !home.isEmpty {
            files.append(home + "/.docker/config.json")
        }
        return files
    }

    /// The credentials for a repository of a registry, or nil when no file has them.
    public static func lookup(registry: String, repository: String, environment env: [String: String]) throws -> Credentials? {
        for file in candidates(environment: env) where FileManager.default.fileExists(atPath: file) {
            if let c = try lookup(registry: registry, repository: repository, in: file) { return c }
        }
        return nil
    }

    static func lookup(registry: String, repository: String, in file: String) throws -> Credentials? {
        let entries = try read(file)
        let wanted = registry + "/" + repository
        let matches = entries.keys.filter { key in
            let k = normalised(key)
            return k == registry || wanted == k || wanted.hasPrefix(k + "/") || (registry == "docker.io" && k == "index.docker.io")
        }
        guard let key = matches.max(by: { normalised($0).count < normalised($1).count }), let auth = entries[key] else { return nil }
        return try decode(auth, key: key, file: file)
    }

    struct Entry: Decodable {
        var auth: String?
        var username: String?
        var password: String?
    }

    struct File: Decodable { var auths: [String: Entry]? }

    static func read(_ file: String) throws -> [String: Entry] {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw RegistryError.settings(path: file, message: "cannot read the auth file")
        }
        do { return try JSONDecoder().decode(File.self, from: data).auths ?? [:] } catch {
            throw RegistryError.settings(path: file, message: "not an auth file ({\"auths\": {REGISTRY: {\"auth\": BASE64}}}): \(error)")
        }
    }

    /// A key as a registry (and repository) name: no scheme, no docker's `/v1/` path.
    static func normalised(_ key: String) -> String {
        var k = key
        for scheme in ["https://", "http://"] where k.hasPrefix(scheme) { k.removeFirst(scheme.count) }
        if k.hasSuffix("/v1/") || k.hasSuffix("/v2/") { k.removeLast(4) }
        while k.hasSuffix("/") { k.removeLast() }
        return k
    }

    static func decode(_ e: Entry, key: String, file: String) throws -> Credentials? {
        if let user = e.username, let password = e.password {
            return Credentials(username: user, password: password, source: file)
        }
        guard let auth = e.auth, !auth.isEmpty else { return nil }
        guard let data = Data(base64Encoded: auth), let text = String(data: data, encoding: .utf8),
              let colon = text.firstIndex(of: ":")
        else {
            throw RegistryError.settings(path: file, message: "auths.\"\(key)\".auth is not base64 of USER:PASSWORD")
        }
        return Credentials(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]), source: file)
    }
}
