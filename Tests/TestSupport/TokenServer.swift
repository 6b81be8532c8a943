import Foundation

/// A token server of the docker token-auth spec on 127.0.0.1, for `LocalRegistry(tokens:)`:
/// `GET /token?service=S&scope=repository:NAME:ACTIONS` with the user's basic credentials
/// answers `{"token": JWT}`, a JWT signed RS256 by a key made here with openssl, its certificate
/// in the `x5c` header; the registry trusts that certificate (`rootcertbundle`), so it checks
/// the signature, issuer, audience, expiry and the granted access as it does for any token
/// service. Wrong or missing credentials get 401. It records the scopes it was asked for.
public final class TokenServer: @unchecked Sendable {
    public static let issuer = "imgbench-test-issuer"
    public static let service = "imgbench-test-registry"
    public let port: UInt16
    public let username: String
    public let password: String
    /// The certificate the registry trusts (PEM).
    public let certificate: String
    private let folder: String
    private let listener: Int32
    private let lock = NSLock()
    private var asked: [String] = []
    private var refused = 0

    /// `https://`-less realm the registry sends in its challenge.
    public var realm: String { "http://127.0.0.1:\(port)/token" }
    /// Every scope asked for with good credentials, in order.
    public var scopes: [String] { lock.withLock { asked } }
    /// How many requests had wrong or no credentials.
    public var refusals: Int { lock.withLock { refused } }

    /// `folder`: where its key and certificate go (the registry's temporary folder).
    public init(folder: String, username: String, password: String) throws {
        self.folder = folder
        self.username = username
        self.password = password
        certificate = "\(folder)/token.crt"
        let r = try sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgbench-token-issuer -keyout token.key -out token.crt"
                       + " && openssl x509 -in token.crt -outform DER -out token.der", cwd: folder)
        guard r.status == 0 else { throw MissingTool(description: "openssl failed: \(r.output)") }
        (listener, port) = try LocalRegistry.listen()
        LocalRegistry.serve(listener) { [self] client in answer(client) }
    }

    deinit { close() }

    public func close() {
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
    }

    func answer(_ client: Int32) {
        defer { Glibc.close(client) }
        let head = LocalRegistry.readHead(client)
        let lines = head.components(separatedBy: "\r\n")
        let target = lines.first?.split(separator: " ").dropFirst().first.map(String.init) ?? ""
        let query = URLComponents(string: target)?.queryItems ?? []
        let basic = "Basic " + Data("\(username):\(password)".utf8).base64EncodedString()
        let authorized = lines.contains { $0.lowercased().hasPrefix("authorization:") && $0.dropFirst(14).trimmingCharacters(in: .whitespaces) == basic }
        guard authorized, let token = try? token(scopes: query.filter { $0.name == "scope" }.compactMap(\.value)) else {
            lock.withLock { refused += 1 }
            LocalRegistry.respond(client, status: "401 Unauthorized", body: #"{"details": "wrong credentials"}"#)
            return
        }
        LocalRegistry.respond(client, status: "200 OK", body: #"{"token": "\#(token)", "expires_in": 300}"#)
    }

    /// The JWT granting `scopes` (`repository:NAME:pull,push`), signed by openssl.
    func token(scopes: [String]) throws -> String {
        lock.withLock { asked += scopes }
        let access: [[String: Any]] = scopes.compactMap { scope in
            let parts = scope.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 3 else { return nil }
            return ["type": String(parts[0]), "name": String(parts[1]), "actions": parts[2].split(separator: ",").map(String.init)]
        }
        let now = Int(Date().timeIntervalSince1970)
        let der = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/token.der"))
        let header: [String: Any] = ["typ": "JWT", "alg": "RS256", "x5c": [der.base64EncodedString()]]
        let claims: [String: Any] = ["iss": Self.issuer, "sub": username, "aud": Self.service, "exp": now + 300, "nbf": now - 10,
                                     "iat": now, "jti": UUID().uuidString, "access": access]
        let input = try Self.base64URL(JSONSerialization.data(withJSONObject: header)) + "."
            + Self.base64URL(JSONSerialization.data(withJSONObject: claims))
        let name = "\(folder)/sign-\(UUID().uuidString)"
        defer { unlink(name); unlink(name + ".sig") }
        try Data(input.utf8).write(to: URL(fileURLWithPath: name))
        let r = try run(["openssl", "dgst", "-sha256", "-sign", "\(folder)/token.key", "-out", name + ".sig", name])
        guard r.status == 0 else { throw MissingTool(description: "openssl dgst failed: \(r.output)") }
        return input + "." + Self.base64URL(try Data(contentsOf: URL(fileURLWithPath: name + ".sig")))
    }

    static func base64URL(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
