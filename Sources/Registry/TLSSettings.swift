import Foundation
import NIOSSL

/// How the client speaks TLS to a registry: the system's trust store, plus what a certificate
/// folder holds (the containers-certs.d layout: `*.crt` are CAs to trust, `NAME.cert` with
/// `NAME.key` a client certificate and its key). The folder is `--cert-dir` when given, else
/// `/etc/containers/certs.d/REGISTRY` or `/etc/docker/certs.d/REGISTRY` when one exists.
/// `verify: false` accepts any server certificate (and allows plain HTTP).
public struct TLSSettings: Sendable, Equatable {
    public var verify: Bool
    public var certDir: String?

    public init(verify: Bool = true, certDir: String? = nil) {
        self.verify = verify
        self.certDir = certDir
    }

    /// The certificate folder used for a registry, if any.
    func folder(for registry: String) -> String? {
        if let certDir { return certDir }
        return ["/etc/containers/certs.d/", "/etc/docker/certs.d/"].map { $0 + registry }
            .first { FileManager.default.fileExists(atPath: $0) }
    }

    /// The NIO SSL client configuration for a registry.
    func configuration(for registry: String) throws -> TLSConfiguration {
        var c = TLSConfiguration.makeClientConfiguration()
        c.certificateVerification = verify ? .fullVerification : .none
        guard let dir = folder(for: registry) else { return c }
        let files = try listing(dir)
        let cas = try files.filter { $0.hasSuffix(".crt") }.flatMap { try certificates(dir + "/" + $0) }
        if !cas.isEmpty { c.additionalTrustRoots = [.certificates(cas)] }
        if let cert = files.first(where: { $0.hasSuffix(".cert") }) {
            let key = String(cert.dropLast(5)) + ".key"
            guard files.contains(key) else {
                throw RegistryError.settings(path: dir + "/" + cert, message: "client certificate without its key \(key) beside it")
            }
            c.certificateChain = try certificates(dir + "/" + cert).map { .certificate($0) }
            c.privateKey = .privateKey(try privateKey(dir + "/" + key))
        }
        return c
    }

    func listing(_ dir: String) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: dir).sorted() } catch {
            throw RegistryError.settings(path: dir, message: "cannot read the certificate folder")
        }
    }

    func certificates(_ file: String) throws -> [NIOSSLCertificate] {
        do { return try NIOSSLCertificate.fromPEMFile(file) } catch {
            throw RegistryError.settings(path: file, message: "not a PEM certificate: \(error)")
        }
    }

    func privateKey(_ file: String) throws -> NIOSSLPrivateKey {
        do { return try NIOSSLPrivateKey(file: file, format: .pem) } catch {
            throw RegistryError.settings(path: file, message: "not a PEM private key: \(error)")
        }
    }
}
