import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import OCI

/// A client of one registry's distribution API (OCI distribution-spec 1.1): blobs, manifests,
/// tags and referrers, for the repositories of one registry.
///
/// It speaks HTTPS (the system's trust store, plus a certificate folder: `TLSSettings`) and
/// plain HTTP only to `localhost` and 127.0.0.0/8 (docker's rule) or with TLS verification off,
/// and only after HTTPS failed to connect. It answers a registry's 401 the way its
/// `WWW-Authenticate` asks: basic auth, or a bearer token fetched from the realm, with the
/// credentials of the user's auth files (`AuthFiles`). It retries with exponential backoff on
/// 429 and 5xx answers and on connections refused, dropped or timed out; anything else is a
/// `RegistryError` naming the registry, the repository, the operation and the HTTP status.
///
/// The parts: this file (the type, requests, retries), `+Auth` (challenges and tokens), `+Push`
/// (blobs and manifests up), `+Fetch` (down), `+Referrers`.
public final class RegistryClient: @unchecked Sendable {
    public struct Options: Sendable {
        public var tls = TLSSettings()
        /// Blobs larger than this go up in chunks of this size (PATCH with Content-Range), so a
        /// lost connection costs one chunk; smaller ones in one request. Either way the bytes are
        /// streamed from the file, never held whole in memory.
        public var chunkSize = 256 << 20
        /// Attempts of one request (or one chunk) before its error is final.
        public var attempts = 5
        /// The first wait before a retry, in seconds; doubled at each retry.
        public var firstDelay = 0.25
        /// How long a connection may take, in seconds.
        public var connectTimeout = 10.0
        /// Where auth files are looked up (`AuthFiles`).
        public var environment = ProcessInfo.processInfo.environment

        public init() {}
    }

    /// The registry as the reference names it (`127.0.0.1:5000`).
    public let registry: String
    let endpoint: String
    let loopback: Bool
    let options: Options
    let http: HTTPClient
    let credentials: Credentials?
    /// Whether a client certificate is offered (a `NAME.cert` in the certificate folder).
    let hasClientCertificate: Bool
    /// Guards `base` and `authorizations`, which concurrent requests share.
    let lock = NSLock()
    var base: String?
    var authorizations: [String: String] = [:]

    /// A client for the registry of `reference`, with the credentials its auth files hold for it.
    public init(for reference: ImageReference, options: Options = Options()) throws {
        registry = reference.registry
        endpoint = reference.endpoint
        loopback = reference.isLoopback
        self.options = options
        credentials = try AuthFiles.lookup(registry: reference.registry, repository: reference.repository,
                                           environment: options.environment)
        let tls = try options.tls.configuration(for: reference.registry)
        hasClientCertificate = !tls.certificateChain.isEmpty
        var config = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: .follow(max: 5, allowCycles: false),
            timeout: .init(connect: .milliseconds(Int64(options.connectTimeout * 1000)), read: .seconds(300)))
        config.decompression = .disabled
        // A connection that fails is retried here, with the request (a refused connection), or
        // not at all (a failed TLS handshake: the probe for plain HTTP must learn it at once).
        config.connectionPool.retryConnectionEstablishment = false
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
    }

    /// Closes the connections. Call it once, when done.
    public func shutdown() async {
        try? await http.shutdown()
    }

    /// Runs `body` with a client for the registry of `reference`, shut down however it ends.
    public static func using<T: Sendable>(_ reference: ImageReference, options: Options,
                                          _ body: (RegistryClient) async throws -> T) async throws -> T {
        let client = try RegistryClient(for: reference, options: options)
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    /// One request: what it is for (for errors) and the token scopes it needs.
    struct Call: Sendable {
        var method: HTTPMethod
        /// A path from the registry's root (`/v2/...`) or an absolute URL (an upload's Location).
        var url: String
        var repository: String
        var operation: String
        var headers: [(String, String)] = []
        var body: Payload?
        var push = false
        /// Extra token scopes (a cross-repository mount's source).
        var extraScopes: [String] = []
        /// Whether a failed connection is retried here; an upload's data is not (the caller
        /// resumes or restarts the upload, since the registry may have kept part of it).
        var retries = true

        var scopes: [String] { ["repository:\(repository):" + (push ? "pull,push" : "pull")] + extraScopes }
    }

    /// Sends a request, answering an auth challenge once and retrying on 429, 5xx and failed
    /// connections; returns any other answer for the caller to judge.
    func send(_ call: Call) async throws -> HTTPClientResponse {
        let root = try await baseURL(call)
        var attempt = 1
        var challenged = false
        while true {
            let response: HTTPClientResponse
            do {
                response = try await http.execute(request(call, root: root), timeout: .seconds(1800))
            } catch {
                try await retryOrThrow(error, call, attempt: attempt, overTLS: root.hasPrefix("https:"))
                attempt += 1
                continue
            }
            let code = Int(response.status.code)
            if code == 401, !challenged, let challenge = response.headers.first(name: "WWW-Authenticate") {
                challenged = true
                await drain(response)
                try await authenticate(challenge: challenge, call: call)
                continue
            }
            guard Self.isRetryable(code), attempt < options.attempts else { return response }
            await drain(response)
            try await Task.sleep(nanoseconds: delay(attempt, retryAfter: response.headers.first(name: "Retry-After")))
            attempt += 1
        }
    }

    func request(_ call: Call, root: String) -> HTTPClientRequest {
        var r = HTTPClientRequest(url: call.url.hasPrefix("/") ? root + call.url : call.url)
        r.method = call.method
        for (name, value) in call.headers { r.headers.add(name: name, value: value) }
        if let auth = authorization(call) { r.headers.replaceOrAdd(name: "Authorization", value: auth) }
        // The client sets Content-Length itself (0 for a PUT, POST or PATCH without a body).
        switch call.body {
        case .bytes(let b)?: r.body = .bytes(b)
        case .file(let part)?: r.body = .stream(part, length: .known(part.count))
        case nil: break
        }
        return r
    }

    static func isRetryable(_ status: Int) -> Bool { status == 429 || status == 500 || status == 502 || status == 503 || status == 504 }

    /// Waits before the next attempt when one is left and the error is worth it; else throws.
    func retryOrThrow(_ error: Error, _ call: Call, attempt: Int, overTLS: Bool) async throws {
        if let e = error as? RegistryError { throw e }
        guard call.retries, attempt < options.attempts, !Self.isTLSFailure(error) else {
            throw RegistryError.connection(registry: registry, repository: call.repository, operation: call.operation,
                                           message: Self.describe(error) + clientCertificateHint(error, overTLS: overTLS), attempts: attempt)
        }
        try await Task.sleep(nanoseconds: delay(attempt, retryAfter: nil))
    }

    /// A registry that requires a client certificate ends a TLS 1.3 connection that offers none
    /// after the handshake, which the client sees as a closed connection: say what may be missing.
    func clientCertificateHint(_ error: Error, overTLS: Bool) -> String {
        guard overTLS, !hasClientCertificate, case .remoteConnectionClosed? = error as? HTTPClientError else { return "" }
        return " (no client certificate was offered: if the registry requires one, put NAME.cert and NAME.key in --cert-dir"
            + " or /etc/containers/certs.d/\(registry)/)"
    }

    /// Exponential backoff; a registry's Retry-After (seconds) is honoured up to 30 s.
    func delay(_ attempt: Int, retryAfter: String?) -> UInt64 {
        let backoff = options.firstDelay * Double(1 << min(attempt - 1, 10))
        let asked = retryAfter.flatMap(Double.init).map { min($0, 30) } ?? 0
        return UInt64(max(backoff, asked) * 1e9)
    }

    func drain(_ response: HTTPClientResponse) async {
        _ = try? await response.body.collect(upTo: 1 << 20)
    }

    /// Throws the registry's answer as an error unless its status is one of `expected`. The
    /// error carries the registry's own error codes and messages, and for a 401 where the
    /// credentials came from (or that there were none).
    func expect(_ response: HTTPClientResponse, _ expected: Set<Int>, _ call: Call) async throws {
        let code = Int(response.status.code)
        guard !expected.contains(code) else { return }
        let body = (try? await response.body.collect(upTo: 1 << 20)).map { String(buffer: $0) } ?? ""
        var detail = Self.errorText(body)
        if code == 401 || code == 403 {
            let hint = credentials.map { "credentials of \($0.username) from \($0.source) refused" }
                ?? "no credentials for \(registry) in \(AuthFiles.candidates(environment: options.environment).joined(separator: ", "))"
            detail = detail.isEmpty ? hint : detail + "; " + hint
        }
        throw RegistryError.status(registry: registry, repository: call.repository, operation: call.operation,
                                   status: code, detail: detail)
    }

    /// The `errors` of a distribution error body, as `CODE: message` lines joined.
    static func errorText(_ body: String) -> String {
        struct Body: Decodable {
            struct Item: Decodable { var code: String?; var message: String? }
            var errors: [Item]?
        }
        guard let b = try? JSONDecoder().decode(Body.self, from: Data(body.utf8)), let errors = b.errors else {
            return String(body.prefix(200)).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return errors.map { [$0.code, $0.message].compactMap { $0 }.joined(separator: ": ") }.joined(separator: "; ")
    }

    static func isTLSFailure(_ error: Error) -> Bool {
        error is NIOSSLError || error is BoringSSLError || "\(error)".contains("SSL")
    }

    /// A transport error as people read it.
    static func describe(_ error: Error) -> String {
        let text = "\(error)"
        if text.contains("refused") { return "cannot connect: connection refused" }
        if let e = error as? HTTPClientError {
            switch e {
            case .remoteConnectionClosed: return "the registry closed the connection"
            case .connectTimeout: return "cannot connect: timed out"
            case .readTimeout: return "no answer: timed out"
            default: return text
            }
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "TLS failed: the registry's certificate is not trusted (give its CA with --cert-dir, or put it in /etc/containers/certs.d/REGISTRY/)"
        }
        if isTLSFailure(error) { return "TLS failed: \(text)" }
        return text
    }
}
