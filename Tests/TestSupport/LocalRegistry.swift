import Foundation
import Host

/// Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 at a free port, for the registry
/// tests: plain HTTP, or TLS with a certificate signed by a CA the test makes with openssl and
/// htpasswd basic auth, or plain HTTP with bearer tokens from a `TokenServer` (the docker
/// token-auth flow that Docker Hub, GHCR and Harbor use). Its storage, configuration and certificates live in a temporary folder;
/// `stop()` (or deinit) ends it and removes them.
public final class LocalRegistry: @unchecked Sendable {
    public static let program = "/usr/bin/docker-registry"
    /// Whether the tests can start one (the package docker-registry is installed).
    public static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: program) && haveTool("openssl") && haveTool("htpasswd") }

    public let folder: TempDir
    public let port: UInt16
    public let tls: Bool
    /// TLS that asks every client for a certificate the test CA signed (`clientcas`).
    public let clientCertificates: Bool
    public let username = "imgbench"
    public let password = "s3cret-\(UInt32.random(in: 0...UInt32.max))"
    private var process: Process?
    /// The token service the registry sends clients to (`tokens`).
    public private(set) var tokenServer: TokenServer?

    /// `host:port`, as a reference names the registry.
    public var address: String { "127.0.0.1:\(port)" }
    /// The folder to give as `--cert-dir` (its CA as `ca.crt`); nil for a plain registry.
    public var certDir: String? { tls ? folder.file("certs.d") : nil }

    /// `tls`: TLS with a test CA, and htpasswd basic auth (user `username`, `password`).
    /// `tokens`: bearer tokens from a `TokenServer` that takes the same user and password.
    /// `clientCertificates` (with `tls`): the registry refuses a client without a certificate of
    /// the test CA; `certDir` then holds one (`client.cert`, `client.key`), as containers-certs.d has it.
    public init(tls: Bool = false, clientCertificates: Bool = false, tokens: Bool = false) throws {
        folder = try TempDir("registry")
        port = try Self.freePort()
        self.tls = tls
        self.clientCertificates = tls && clientCertificates
        if tls { try makeCertificates(); try makePasswords() }
        if tokens { tokenServer = try TokenServer(folder: folder.path, username: username, password: password) }
        try config().write(toFile: folder.file("config.yml"), atomically: true, encoding: .utf8)
        try start()
    }

    deinit { stop(); tokenServer?.close() }

    /// Ends the registry (its storage stays until the value goes away).
    public func stop() {
        guard let p = process else { return }
        process = nil
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
    }

    /// Starts it again after `stop()`, on the same port and storage.
    public func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.program)
        p.arguments = ["serve", folder.file("config.yml")]
        FileManager.default.createFile(atPath: folder.file("registry.log"), contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: folder.file("registry.log")))
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
        try waitUntilListening()
    }

    /// An auth file (`$REGISTRY_AUTH_FILE`) holding these credentials for this registry.
    public func authFile(username: String? = nil, password: String? = nil) throws -> String {
        let auth = Data("\(username ?? self.username):\(password ?? self.password)".utf8).base64EncodedString()
        let path = folder.file("auth-\(UUID().uuidString.prefix(8)).json")
        try #"{"auths": {"\#(address)": {"auth": "\#(auth)"}}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// What the registry logged, for a failing test's message.
    public var log: String { (try? String(contentsOfFile: folder.file("registry.log"), encoding: .utf8)) ?? "" }

    func config() -> String {
        var lines = [
            "version: 0.1", "log:", "  level: warn", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", "    rootdirectory: \(folder.file("storage"))", "  delete:", "    enabled: true",
            "http:", "  addr: \(address)",
        ]
        if tls {
            lines += ["  tls:", "    certificate: \(folder.file("server.crt"))", "    key: \(folder.file("server.key"))"]
                + (clientCertificates ? ["    clientcas:", "      - \(folder.file("ca.crt"))"] : [])
                + ["auth:", "  htpasswd:", "    realm: imgbench-test", "    path: \(folder.file("htpasswd"))"]
        }
        if let t = tokenServer {
            lines += ["auth:", "  token:", "    realm: \(t.realm)", "    service: \(TokenServer.service)",
                      "    issuer: \(TokenServer.issuer)", "    rootcertbundle: \(t.certificate)"]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A CA, and a server certificate it signs for 127.0.0.1 and localhost.
    func makeCertificates() throws {
        let d = folder.path
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: "\(d)/server.ext", atomically: true, encoding: .utf8)
        let script = """
            set -e
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=imgbench-test-ca -keyout ca.key -out ca.crt \
              -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
            openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt
            mkdir -p certs.d && cp ca.crt certs.d/ca.crt
            """ + (clientCertificates ? """

            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl req -newkey rsa:2048 -nodes -subj /CN=imgbench-test-client -keyout certs.d/client.key -out client.csr
            openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out certs.d/client.cert
            """ : "")
        let r = try sh(script, cwd: d)
        guard r.status == 0 else { throw MissingTool(description: "openssl failed: \(r.output)") }
    }

    func makePasswords() throws {
        let r = try runProcess(try HostTool.path("htpasswd", package: "apache2-utils"), ["-Bbn", username, password])
        guard r.status == 0 else { throw MissingTool(description: "htpasswd failed: \(r.output)") }
        try r.stdout.write(toFile: folder.file("htpasswd"), atomically: true, encoding: .utf8)
    }

    func waitUntilListening() throws {
        for _ in 0..<200 {
            if Self.accepts(port) { return }
            guard process?.isRunning == true else { break }
            usleep(50_000)
        }
        stop()
        throw MissingTool(description: "docker-registry did not listen on \(address): \(log)")
    }

    /// Whether something accepts TCP connections on 127.0.0.1:port.
    public static func accepts(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = loopback(port)
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        } }
    }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        return addr
    }

    /// A socket listening on 127.0.0.1 at a free port.
    static func listen() throws -> (Int32, UInt16) {
        let port = try freePort()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = loopback(port)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        } }
        guard bound, Glibc.listen(fd, 16) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        return (fd, port)
    }

    /// Accepts connections on `listener` until it is closed, each handled on a thread of its own.
    static func serve(_ listener: Int32, _ handle: @escaping @Sendable (Int32) -> Void) {
        Thread.detachNewThread {
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { return }
                Thread.detachNewThread { handle(client) }
            }
        }
    }

    /// An HTTP request's head (up to the blank line), read byte by byte from a socket.
    static func readHead(_ fd: Int32) -> String {
        var head = [UInt8]()
        var byte: UInt8 = 0
        while head.count < 64 << 10, read(fd, &byte, 1) == 1 {
            head.append(byte)
            if head.count >= 4, head.suffix(4) == [13, 10, 13, 10] { break }
        }
        return String(decoding: head, as: UTF8.self)
    }

    /// Writes an HTTP/1.1 answer (`status`: "200 OK") with a JSON body, or none, and closes the
    /// writing side.
    static func respond(_ fd: Int32, status: String, headers: [String] = [], body: String = "") {
        let text = (["HTTP/1.1 \(status)"] + headers + ["Content-Type: application/json", "Content-Length: \(body.utf8.count)",
                                                      "Connection: close", "", body]).joined(separator: "\r\n")
        _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        shutdown(fd, Int32(SHUT_WR))
    }

    /// A port nothing listens on now (the kernel's choice for a socket bound to port 0).
    public static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = loopback(0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw POSIXError(.EADDRINUSE) }
        return UInt16(bigEndian: addr.sin_port)
    }
}
