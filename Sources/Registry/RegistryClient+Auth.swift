import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

extension RegistryClient {
    /// The scheme and host every request goes to, found by the first request (`GET /v2/`):
    /// HTTPS, or plain HTTP where it is allowed and HTTPS failed at TLS while HTTP answers as a
    /// registry. When neither works, the HTTPS error is the one reported.
    func baseURL(_ call: Call) async throws -> String {
        if let b = lock.withLock({ base }) { return b }
        let https = "https://\(endpoint)"
        let found: String
        do {
            try await ping(https, call)
            found = https
        } catch let tlsFailure where (loopback || !options.tls.verify) && Self.failedAtTLS(tlsFailure) {
            do {
                try await ping("http://\(endpoint)", call)
            } catch let busy as RegistryError {
                // A server that speaks plain HTTP but stays busy: its status is the error to give;
                // anything else (a TLS server answering 400 to plain HTTP): the TLS failure is.
                if case let .status(_, _, _, code, _) = busy, Self.isRetryable(code) { throw busy }
                throw tlsFailure
            }
            found = "http://\(endpoint)"
        }
        lock.withLock { base = found }
        return found
    }

    /// Whether a connection error is a failed TLS handshake (a server that speaks plain HTTP).
    static func failedAtTLS(_ error: Error) -> Bool {
        if case let RegistryError.connection(_, _, _, message, _) = error { return message.hasPrefix("TLS failed") }
        return isTLSFailure(error)
    }

    /// `GET /v2/`: a registry answers 200, or 401 with its challenge; 429 and 5xx are retried
    /// as every other request's are.
    private func ping(_ root: String, _ call: Call) async throws {
        var attempt = 1
        while true {
            var r = HTTPClientRequest(url: root + "/v2/")
            r.method = .GET
            do {
                let response = try await http.execute(r, timeout: .seconds(60))
                await drain(response)
                let code = Int(response.status.code)
                if Self.isRetryable(code), attempt < options.attempts {
                    try await Task.sleep(nanoseconds: delay(attempt, retryAfter: response.headers.first(name: "Retry-After")))
                    attempt += 1
                    continue
                }
                guard code == 200 || code == 401 else {
                    throw RegistryError.status(registry: registry, repository: call.repository, operation: "GET \(root)/v2/",
                                               status: code, detail: "not a distribution API (it answers 200 or 401)")
                }
                return
            } catch {
                try await retryOrThrow(error, call, attempt: attempt, overTLS: root.hasPrefix("https:"))
                attempt += 1
            }
        }
    }

    /// The Authorization header a request carries: its scopes' token, or basic credentials
    /// once the registry asked for them.
    func authorization(_ call: Call) -> String? {
        lock.withLock { authorizations[call.scopes.joined(separator: " ")] ?? authorizations["basic"] }
    }

    /// Answers a `WWW-Authenticate` challenge: `Basic` with the user's credentials, `Bearer` with
    /// a token from the realm for the request's scopes.
    func authenticate(challenge: String, call: Call) async throws {
        let (scheme, params) = Self.parseChallenge(challenge)
        switch scheme.lowercased() {
        case "basic":
            guard let credentials else { return }
            lock.withLock { authorizations["basic"] = credentials.basicHeader }
        case "bearer":
            guard let realm = params["realm"] else {
                throw RegistryError.invalidResponse(registry: registry, repository: call.repository, operation: call.operation,
                                                    message: "bearer challenge without a realm: \(challenge)")
            }
            let token = try await fetchToken(realm: realm, service: params["service"], call: call)
            lock.withLock { authorizations[call.scopes.joined(separator: " ")] = "Bearer " + token }
        default:
            throw RegistryError.invalidResponse(registry: registry, repository: call.repository, operation: call.operation,
                                                message: "unknown auth scheme in WWW-Authenticate: \(challenge)")
        }
    }

    /// A token from a bearer realm (the docker token spec), for the call's scopes, asked with the
    /// user's credentials when there are any (anonymous otherwise).
    func fetchToken(realm: String, service: String?, call: Call) async throws -> String {
        var url = URLComponents(string: realm)
        let existing = url?.queryItems ?? []
        url?.queryItems = existing + (service.map { [URLQueryItem(name: "service", value: $0)] } ?? [])
            + call.scopes.map { URLQueryItem(name: "scope", value: $0) }
        guard let text = url?.string else {
            throw RegistryError.invalidResponse(registry: registry, repository: call.repository, operation: call.operation, message: "bad token realm \(realm)")
        }
        var r = HTTPClientRequest(url: text)
        if let credentials { r.headers.add(name: "Authorization", value: credentials.basicHeader) }
        let tokenCall = Call(method: .GET, url: text, repository: call.repository, operation: "GET token from \(realm)")
        let response: HTTPClientResponse
        do { response = try await http.execute(r, timeout: .seconds(60)) } catch {
            throw RegistryError.connection(registry: registry, repository: call.repository, operation: tokenCall.operation,
                                           message: Self.describe(error), attempts: 1)
        }
        try await expect(response, [200], tokenCall)
        struct Token: Decodable { var token: String?; var access_token: String? }
        let body = try await response.body.collect(upTo: 1 << 20)
        guard let t = try? JSONDecoder().decode(Token.self, from: Data(buffer: body)), let token = t.token ?? t.access_token else {
            throw RegistryError.invalidResponse(registry: registry, repository: call.repository, operation: tokenCall.operation, message: "no token in the answer")
        }
        return token
    }

    /// `Bearer realm="https://auth/token",service="registry",scope="repository:a:pull"` as the
    /// scheme and its parameters.
    static func parseChallenge(_ header: String) -> (String, [String: String]) {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard let space = trimmed.firstIndex(of: " ") else { return (trimmed, [:]) }
        var params: [String: String] = [:]
        var rest = trimmed[trimmed.index(after: space)...]
        while let eq = rest.firstIndex(of: "=") {
            let key = rest[..<eq].trimmingCharacters(in: CharacterSet(charactersIn: " ,"))
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                let end = rest.firstIndex(of: "\"") ?? rest.endIndex
                value = String(rest[..<end])
                rest = end < rest.endIndex ? rest[rest.index(after: end)...] : rest[end...]
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = String(rest[..<end])
                rest = rest[end...]
            }
            params[key.lowercased()] = value
        }
        return (String(trimmed[..<space]), params)
    }
}
