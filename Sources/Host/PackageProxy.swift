import Foundation

/// An HTTP proxy on 127.0.0.1 through which apt fetches, so that a build downloads each package
/// once: the files of a Debian archive that never change under their name (a package in `pool/`,
/// an index under `by-hash/`) are kept in `folder`, by host and path as apt-cacher-ng keeps them,
/// and served from there the next time any build asks for them; everything else (InRelease, which
/// changes) is passed through.
///
/// Only what the archive sent is kept: a file is written from the upstream response, to a
/// `.partial` name renamed when all its `Content-Length` bytes came (a `by-hash` index only when
/// its SHA-256 is the one its name says), never from what a step wrote. apt still checks every
/// file against the signed Release, as without the proxy. A file being fetched is locked
/// (`FileLock`), so two builds, or the two sides of one, that ask for it at once download it once.
///
/// The archive is reached directly, or through the HTTP proxy the build was given (`http_proxy`,
/// as apt, curl and buildah take it): a site's apt-cacher-ng or a company's proxy.
///
/// The counts say what the clients of this proxy downloaded and what the folder saved them.
public final class PackageProxy: @unchecked Sendable {
    public let folder: String
    /// The proxy the archive is reached through; nil: directly.
    public let through: UpstreamProxy?
    public private(set) var port = 0
    private var listener: Int32 = -1
    private let lock = NSLock()
    private var counts = Counts()
    private var stopped = false
    /// The fetched files being made durable and renamed into the folder (`keep`), after their
    /// bytes reached apt.
    private let keeping = DispatchGroup()
    private let keeper = DispatchQueue(label: "imgbench.package-proxy.keep")

    /// Bytes by what happened to them.
    public struct Counts: Sendable, Equatable {
        /// Kept files fetched from the archive now (and kept).
        public var fetchedBytes: UInt64 = 0
        /// Kept files served from the folder: a download saved.
        public var reusedBytes: UInt64 = 0
        /// Files that are never kept (InRelease, a request with a range), passed through.
        public var passedBytes: UInt64 = 0
        public var fetchedFiles = 0
        public var reusedFiles = 0

        public init() {}

        /// These counts and `other`'s together.
        public func adding(_ other: Counts) -> Counts {
            var c = self
            c.fetchedBytes += other.fetchedBytes
            c.reusedBytes += other.reusedBytes
            c.passedBytes += other.passedBytes
            c.fetchedFiles += other.fetchedFiles
            c.reusedFiles += other.reusedFiles
            return c
        }

        /// What happened between `earlier` and these counts.
        public func since(_ earlier: Counts) -> Counts {
            var c = Counts()
            c.fetchedBytes = fetchedBytes - earlier.fetchedBytes
            c.reusedBytes = reusedBytes - earlier.reusedBytes
            c.passedBytes = passedBytes - earlier.passedBytes
            c.fetchedFiles = fetchedFiles - earlier.fetchedFiles
            c.reusedFiles = reusedFiles - earlier.reusedFiles
            return c
        }
    }

    public init(folder: String, through: UpstreamProxy? = nil) {
        self.folder = folder
        self.through = through
    }

    /// An HTTP proxy between this one and the archive.
    public struct UpstreamProxy: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        /// `Proxy-Authorization` for a proxy URL with a user (`http://USER:PASSWORD@HOST:PORT`).
        var authorization: String?
        /// `no_proxy`'s entries: hosts reached directly (`*`: all of them).
        public var directHosts: [String]

        public init(host: String, port: Int, authorization: String? = nil, directHosts: [String] = []) {
            (self.host, self.port, self.authorization, self.directHosts) = (host, port, authorization, directHosts)
        }

        /// The proxy `http_proxy` (or `HTTP_PROXY`) names, with `no_proxy` (or `NO_PROXY`); nil when
        /// none is set. Only an `http://` proxy: apt's packages come over http, and a proxy
        /// spoken to over TLS would need a TLS client this proxy does not have.
        public static func from(environment: [String: String]) throws -> UpstreamProxy? {
            guard let (name, value) = [("http_proxy", environment["http_proxy"]), ("HTTP_PROXY", environment["HTTP_PROXY"])]
                .first(where: { !($0.1 ?? "").trimmingCharacters(in: .whitespaces).isEmpty }).map({ ($0.0, $0.1!) }) else { return nil }
            func bad(_ why: String) -> HostError {
                HostError.io(path: name, message: "'\(value)' \(why); the package cache reaches the archive through an http://HOST[:PORT] proxy")
            }
            var rest = Substring(value.trimmingCharacters(in: .whitespaces))
            if let scheme = rest.range(of: "://") {
                guard rest[..<scheme.lowerBound].lowercased() == "http" else { throw bad("is not an http:// proxy") }
                rest = rest[scheme.upperBound...]
            }
            if let slash = rest.firstIndex(of: "/") {
                guard rest[slash...].allSatisfy({ $0 == "/" }) else { throw bad("has a path") }
                rest = rest[..<slash]
            }
            var authorization: String?
            if let at = rest.lastIndex(of: "@") {
                let user = String(rest[..<at]).removingPercentEncoding ?? String(rest[..<at])
                authorization = "Basic " + Data(user.utf8).base64EncodedString()
                rest = rest[rest.index(after: at)...]
            }
            var host = String(rest), port = 80
            if let c = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
                guard let p = Int(rest[rest.index(after: c)...]), (1...65535).contains(p) else { throw bad("has no valid port") }
                (host, port) = (String(rest[..<c]), p)
            }
            host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            guard !host.isEmpty, host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" }) else { throw bad("names no host") }
            let noProxy = environment["no_proxy"] ?? environment["NO_PROXY"] ?? ""
            let direct = noProxy.split(separator: ",").map { entry -> String in
                var e = entry.trimmingCharacters(in: .whitespaces).lowercased()
                if let c = e.lastIndex(of: ":"), !e.contains("]"), e.filter({ $0 == ":" }).count == 1 { e = String(e[..<c]) }
                return e
            }.filter { !$0.isEmpty }
            return UpstreamProxy(host: host.lowercased(), port: port, authorization: authorization, directHosts: direct)
        }

        /// Whether a request for `host` goes through this proxy: not when `no_proxy` names the
        /// host or a domain it is in (`example.org` and `.example.org` both cover `a.example.org`).
        public func carries(_ host: String) -> Bool {
            let h = host.lowercased()
            return !directHosts.contains { d in
                d == "*" || h == d || h.hasSuffix(d.hasPrefix(".") ? d : "." + d)
            }
        }

        public var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)/" }
    }

    /// The counts so far, once every file fetched so far is kept (or known not to be).
    public var current: Counts {
        keeping.wait()
        return lock.withLock { counts }
    }

    /// Listens on a free port of 127.0.0.1 and serves each connection on a thread of its own.
    public func start() throws {
        try FileSystem.makeDirectories(folder, mode: 0o755)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HostError.systemCall(path: "socket", operation: "socket", errno: errno) }
        var addr = TCPPort.loopback(port: 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok, listen(fd, 64) == 0 else {
            let e = errno
            close(fd)
            throw HostError.systemCall(path: "127.0.0.1", operation: "listen", errno: e)
        }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { [self] in acceptLoop(fd) }
        t.name = "imgbench package proxy"
        t.start()
    }

    /// Stops listening, and returns once the files fetched so far are kept; a connection under
    /// way ends when its client closes it.
    public func stop() {
        let fd = lock.withLock { () -> Int32 in
            stopped = true
            defer { listener = -1 }
            return listener
        }
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
        keeping.wait()
    }

    deinit { stop() }

    /// The apt configuration that sends apt's http requests here.
    public var aptConfiguration: String {
        "// imgbench's package cache (imgbench build): apt's http downloads go through it, so that\n"
            + "// each package is downloaded once; it is not part of the image.\n"
            + "Acquire::http::Proxy \"http://127.0.0.1:\(port)/\";\n"
    }

    private func acceptLoop(_ fd: Int32) {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            PackageProxy.setTimeout(client, seconds: 300)
            PackageProxy.sendAtOnce(client)
            let t = Thread { [self] in
                serve(client)
                close(client)
            }
            t.name = "imgbench package proxy connection"
            t.start()
        }
    }

    static func setTimeout(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Turns Nagle's algorithm off (TCP_NODELAY), as HTTP proxies do: this proxy writes an
    /// answer's head, then its body, and with Nagle a small body would wait for the client's
    /// delayed ACK of the head (what `SocketReader` works around on apt-cacher-ng's side).
    static func sendAtOnce(_ fd: Int32) {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Requests of one connection, one after the other (apt pipelines them), until the client
    /// closes it or a response ends it. The connection to the archive stays open between them, as
    /// apt keeps its own open without a proxy: a new TCP connection per package made mmdebstrap's
    /// downloads half again as slow.
    private func serve(_ client: Int32) {
        var reader = SocketReader(fd: client)
        var upstream = Upstream(through: through)
        defer { upstream.close() }
        while let head = reader.readHead() {
            guard let request = Request(head) else {
                _ = PackageProxy.send(client, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            }
            guard request.method == "GET" || request.method == "HEAD", let target = request.target else {
                _ = PackageProxy.send(client, "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            }
            let keepAlive: Bool
            if request.method == "GET", request.header("range") == nil, let file = keptPath(target) {
                keepAlive = serveKept(request, target: target, file: file, upstream: &upstream, to: client)
            } else {
                keepAlive = pass(request, target: target, upstream: &upstream, to: client)
            }
            if !keepAlive { return }
        }
    }

    /// The connection to the archive a client connection uses, kept open while the archive
    /// allows it.
    /// Through an upstream proxy, the connection is to that proxy, and the request names the
    /// archive in absolute form.
    struct Upstream {
        let through: UpstreamProxy?
        private var key: String?
        private var fd: Int32 = -1
        var reader = SocketReader(fd: -1)

        init(through: UpstreamProxy? = nil) { self.through = through }

        /// Sends the request (on the open connection to its host, else a new one) and reads the
        /// answer's head. An open connection the archive closed meanwhile is made again, once.
        mutating func exchange(_ request: Request, _ t: Target, keepRange: Bool) -> Response? {
            let proxy = through.flatMap { $0.carries(t.host) ? $0 : nil }
            let text = request.upstream(t, keepRange: keepRange, through: proxy)
            let (host, port) = proxy.map { ($0.host, $0.port) } ?? (t.host, t.port)
            let wanted = "\(proxy == nil ? "" : "proxy ")\(host):\(port)"
            for attempt in 0..<2 {
                let reused = key == wanted && fd >= 0
                if !reused {
                    close()
                    guard let c = PackageProxy.connect(host: host, port: port) else { return nil }
                    (fd, key, reader) = (c, wanted, SocketReader(fd: c))
                }
                if PackageProxy.send(fd, text), let response = finalResponse() { return response }
                close()
                if !reused || attempt == 1 { return nil }
            }
            return nil
        }

        /// The answer's head, past any interim (1xx) answer.
        private mutating func finalResponse() -> Response? {
            while let head = reader.readHead(), let r = Response(head) {
                if (100..<200).contains(r.status), r.status != 101 { continue }
                return r
            }
            return nil
        }

        /// After a response: the connection stays open only when its body ended by its length and
        /// the archive did not say it closes.
        mutating func settle(_ response: Response, bodyRead: Bool) {
            if !bodyRead || response.header("connection")?.lowercased() == "close" { close() }
        }

        mutating func close() {
            if fd >= 0 { Glibc.close(fd) }
            (fd, key) = (-1, nil)
        }
    }

    /// Where a file that never changes under its name is kept; nil for one that may change.
    /// apt writes a version's `+`, `~` and epoch `:` percent-encoded (`1.2%2bdeb12u1`): the
    /// segments are decoded, and one that decodes to a separator, `.`, `..` or NUL is never kept.
    func keptPath(_ t: Target) -> String? {
        guard !t.path.contains("?") else { return nil }
        var segments: [String] = []
        for raw in t.path.split(separator: "/", omittingEmptySubsequences: false) {
            guard let d = String(raw).removingPercentEncoding, d != ".", d != "..", !d.contains("/"), !d.contains("\0") else { return nil }
            segments.append(d)
        }
        let path = segments.joined(separator: "/")
        let isPackage = segments.contains("pool") && (path.hasSuffix(".deb") || path.hasSuffix(".udeb"))
        let isByHash = segments.count >= 3 && segments[segments.count - 3] == "by-hash" && segments[segments.count - 2] == "SHA256"
        guard isPackage || isByHash else { return nil }
        return "\(folder)/\(t.host)\(t.port == 80 ? "" : "_\(t.port)")\(path)"
    }

    /// A kept file: from the folder, or fetched, kept and sent at once. Under the file's lock, so
    /// that whoever asks second waits and reads the folder.
    private func serveKept(_ request: Request, target: Target, file: String, upstream: inout Upstream, to client: Int32) -> Bool {
        if let size = PackageProxy.regularFileSize(file) { return sendKept(file, size: size, to: client) }
        let dir = (file as NSString).deletingLastPathComponent
        guard (try? FileSystem.makeDirectories(dir, mode: 0o755)) != nil, let held = PackageProxy.lock(file + ".lock") else {
            return pass(request, target: target, upstream: &upstream, to: client)
        }
        if let size = PackageProxy.regularFileSize(file) {
            defer { PackageProxy.release(held, of: file) }
            return sendKept(file, size: size, to: client)
        }
        return fetch(request, target: target, keepingAt: file, holding: held, upstream: &upstream, to: client)
    }

    /// Lets a file's lock go. The lock file goes while it is held: unlinked after the unlock, a
    /// build that took the old one in between and one that made a new one would both hold "the"
    /// lock.
    static func release(_ held: FileLock, of file: String) {
        unlink(file + ".lock")
        held.unlock()
    }

    /// The file's lock, waited for while another side or build fetches it, but no longer than
    /// apt waits for an answer without giving up (its timeout is 30 s): then nil, and the request
    /// is passed through (downloaded a second time) rather than failing the step.
    static func lock(_ path: String) -> FileLock? {
        let dir = (path as NSString).deletingLastPathComponent
        for _ in 0..<200 {
            if let l = FileLock(trying: path, mode: .exclusive) { return l }
            // `imgbench cache prune` removes folders it emptied: made again.
            if !FileSystem.exists(dir) { try? FileSystem.makeDirectories(dir, mode: 0o755) }
            usleep(100_000)
        }
        return nil
    }

    private func sendKept(_ file: String, size: UInt64, to client: Int32) -> Bool {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            return PackageProxy.send(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n") && false
        }
        defer { close(fd) }
        // Its mtime is its last use: what `imgbench cache prune` goes by.
        futimens(fd, nil)
        guard PackageProxy.send(client, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \(size)\r\nConnection: keep-alive\r\n\r\n") else { return false }
        var offset: off_t = 0
        while UInt64(offset) < size {
            let n = sendfile(client, fd, &offset, Int(min(size - UInt64(offset), 1 << 24)))
            if n <= 0 { return false }
        }
        lock.withLock { counts.reusedBytes += size; counts.reusedFiles += 1 }
        return true
    }

    /// Fetches a file to keep: the response goes to the client as it comes, and into
    /// `FILE.partial`, renamed to `file` when it is whole. Holding the file's lock, which it lets
    /// go when the file is kept or dropped.
    private func fetch(_ request: Request, target: Target, keepingAt file: String, holding held: FileLock,
                       upstream: inout Upstream, to client: Int32) -> Bool {
        guard let response = upstream.exchange(request, target, keepRange: false) else {
            PackageProxy.release(held, of: file)
            return badGateway(client, target)
        }
        // Only the file itself is kept: not a compressed answer, nor one framed otherwise.
        guard response.status == 200, let length = response.contentLength, response.header("transfer-encoding") == nil,
              response.header("content-encoding") == nil else {
            PackageProxy.release(held, of: file)
            return relay(response, upstream: &upstream, request: request, to: client)
        }
        // One partial name per file, written under its lock: what a killed fetch left is
        // overwritten by the next one, never piled up.
        let partial = "\(file).partial"
        let out = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        var written = out >= 0
        func drop() {
            if out >= 0 { close(out) }
            unlink(partial)
            PackageProxy.release(held, of: file)
        }
        guard PackageProxy.send(client, response.forwardHead(keepAlive: true)) else { drop(); return false }
        var left = length, clientOK = true
        while left > 0 {
            guard let chunk = upstream.reader.read(max: Int(min(left, 1 << 20))) else { upstream.close(); drop(); return false }
            left -= UInt64(chunk.count)
            if clientOK { clientOK = PackageProxy.send(client, chunk) }
            if written { written = (try? chunk.withUnsafeBytes { try FileSystem.writeAll(out, $0, path: partial) }) != nil }
        }
        upstream.settle(response, bodyRead: true)
        keep(Fetched(out: out, written: written, partial: partial, file: file, archivePath: target.path, length: length, held: held))
        return clientOK
    }

    /// A fetched file whose bytes reached the client, still to be made durable and renamed.
    private struct Fetched: @unchecked Sendable {
        let out: Int32
        let written: Bool
        let partial: String
        let file: String
        let archivePath: String
        let length: UInt64
        /// The file's lock, let go once it is kept or dropped (used by one thread at a time).
        let held: FileLock
    }

    /// Makes a fetched file durable (fsync), checks it (`isWhole`) and renames it into the folder,
    /// beside apt's next request rather than before it: an fsync per package, in line, made
    /// mmdebstrap's downloads through the cache three times as slow as without it. The lock is
    /// held until then, so a side or build that asks for the file meanwhile waits, then reads it
    /// from the folder; `current` and `stop` wait for these.
    private func keep(_ f: Fetched) {
        keeping.enter()
        keeper.async { [self] in
            defer {
                if f.out >= 0 { close(f.out) }
                unlink(f.partial)
                PackageProxy.release(f.held, of: f.file)
                keeping.leave()
            }
            if f.written, fsync(f.out) == 0, PackageProxy.isWhole(f.partial, path: f.archivePath), rename(f.partial, f.file) == 0 {
                lock.withLock { counts.fetchedBytes += f.length; counts.fetchedFiles += 1 }
            } else {
                lock.withLock { counts.passedBytes += f.length }
            }
        }
    }

    /// Whether a fetched file may be kept: a `by-hash` index only when its SHA-256 is the one its
    /// name says (a package's name holds no hash: apt checks it against the signed index).
    static func isWhole(_ file: String, path: String) -> Bool {
        guard path.contains("/by-hash/SHA256/") else { return true }
        guard let r = try? Command.run(["sha256sum", file]), r.status == 0 else { return false }
        return r.output.split(separator: " ").first.map(String.init) == (path as NSString).lastPathComponent.lowercased()
    }

    /// A request passed through: the archive's answer relayed to the client.
    /// It asks the archive to close the connection after it: such an answer may be chunked, which
    /// `relay` reads to the end of the stream.
    private func pass(_ request: Request, target: Target, upstream: inout Upstream, to client: Int32) -> Bool {
        guard let response = upstream.exchange(request, target, keepRange: true) else { return badGateway(client, target) }
        defer { upstream.close() }
        return relay(response, upstream: &upstream, request: request, to: client)
    }

    /// A response relayed as it is framed: by its Content-Length (the connection stays open), or
    /// to the archive's end of stream (chunked or unframed: the connection then closes).
    private func relay(_ response: Response, upstream: inout Upstream, request: Request, to client: Int32) -> Bool {
        let bodiless = request.method == "HEAD" || response.status == 204 || response.status == 304 || (100..<200).contains(response.status)
        if bodiless {
            upstream.settle(response, bodyRead: true)
            return PackageProxy.send(client, response.forwardHead(keepAlive: true))
        }
        if let length = response.contentLength, response.header("transfer-encoding") == nil {
            guard PackageProxy.send(client, response.forwardHead(keepAlive: true)) else { upstream.close(); return false }
            var left = length
            while left > 0 {
                guard let chunk = upstream.reader.read(max: Int(min(left, 1 << 20))), PackageProxy.send(client, chunk) else {
                    upstream.close()
                    return false
                }
                left -= UInt64(chunk.count)
            }
            lock.withLock { counts.passedBytes += length }
            upstream.settle(response, bodyRead: true)
            return true
        }
        defer { upstream.close() }
        guard PackageProxy.send(client, response.forwardHead(keepAlive: false)) else { return false }
        while let chunk = upstream.reader.read(max: 1 << 20) {
            guard PackageProxy.send(client, chunk) else { return false }
            lock.withLock { counts.passedBytes += UInt64(chunk.count) }
        }
        return false
    }

    private func badGateway(_ client: Int32, _ target: Target) -> Bool {
        let via = through.flatMap { $0.carries(target.host) ? " through the proxy \($0) (http_proxy)" : nil } ?? ""
        let body = "imgbench's package cache could not reach \(target.host):\(target.port)\(via)\n"
        _ = PackageProxy.send(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        return false
    }

    /// The size of a regular file; nil when there is none.
    static func regularFileSize(_ path: String) -> UInt64? {
        guard let st = try? FileSystem.lstatIfExists(path), (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return UInt64(st.st_size)
    }

    static func send(_ fd: Int32, _ text: String) -> Bool { send(fd, Array(text.utf8)) }

    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// A TCP connection to the archive, by name (IPv4 or IPv6), or nil.
    static func connect(host: String, port: Int) -> Int32? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(first) }
        var a: UnsafeMutablePointer<addrinfo>? = first
        while let ai = a {
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            if fd >= 0 {
                setTimeout(fd, seconds: 120)
                sendAtOnce(fd)
                if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return fd }
                close(fd)
            }
            a = ai.pointee.ai_next
        }
        return nil
    }

    /// Where an absolute-form request goes.
    struct Target {
        var host: String
        var port: Int
        var path: String
    }

    /// A head's header lines as (name, value), in order.
    static func headers(_ lines: [String]) -> [(String, String)] {
        lines.compactMap { l in
            guard let c = l.firstIndex(of: ":") else { return nil }
            return (String(l[..<c]), l[l.index(after: c)...].trimmingCharacters(in: .whitespaces))
        }
    }

    struct Request {
        var method: String
        var uri: String
        var headers: [(String, String)]

        init?(_ head: String) {
            var lines = head.components(separatedBy: "\r\n")
            let first = lines.removeFirst().split(separator: " ").map(String.init)
            guard first.count == 3, first[2].hasPrefix("HTTP/1.") else { return nil }
            (method, uri) = (first[0], first[1])
            headers = PackageProxy.headers(lines)
        }

        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }

        /// An `http://HOST[:PORT]/PATH` request's host, port and path; nil for any other.
        var target: Target? {
            guard uri.hasPrefix("http://") else { return nil }
            let rest = uri.dropFirst("http://".count)
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let authority = String(rest[..<slash])
            let path = slash == rest.endIndex ? "/" : String(rest[slash...])
            var host = authority, port = 80
            if let c = authority.lastIndex(of: ":"), let p = Int(authority[authority.index(after: c)...]) {
                host = String(authority[..<c])
                port = p
            }
            guard !host.isEmpty, !host.hasPrefix("."), !host.contains(".."), host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" }),
                  (1...65535).contains(port) else { return nil }
            return Target(host: host.lowercased(), port: port, path: path)
        }

        /// The request as the archive gets it: origin form, on a connection kept open (absolute
        /// form, with the proxy's own credentials, through an upstream proxy).
        /// A GET or HEAD has no body: the client's body framing and expectations never reach the
        /// archive, so no answer on the connection belongs to anything but this request. A kept
        /// file (`keepRange` false) is asked for whole and uncompressed; a passed-through request
        /// asks the archive to close after its answer.
        func upstream(_ t: Target, keepRange: Bool, through proxy: UpstreamProxy? = nil) -> String {
            let dropped = Set(["connection", "keep-alive", "proxy-connection", "proxy-authorization", "host", "te", "upgrade",
                               "content-length", "transfer-encoding", "expect", "trailer"])
                .union(keepRange ? [] : ["range", "if-range", "if-modified-since", "if-none-match", "accept-encoding"])
            let authority = "\(t.host)\(t.port == 80 ? "" : ":\(t.port)")"
            var s = "\(method) \(proxy == nil ? "" : "http://" + authority)\(t.path) HTTP/1.1\r\nHost: \(authority)\r\n"
            if let auth = proxy?.authorization { s += "Proxy-Authorization: \(auth)\r\n" }
            for (k, v) in headers where !dropped.contains(k.lowercased()) { s += "\(k): \(v)\r\n" }
            return s + "Connection: \(keepRange ? "close" : "keep-alive")\r\n\r\n"
        }
    }

    struct Response {
        var status: Int
        var statusLine: String
        var headers: [(String, String)]

        init?(_ head: String) {
            var lines = head.components(separatedBy: "\r\n")
            statusLine = lines.removeFirst()
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let s = Int(parts[1]) else { return nil }
            status = s
            headers = PackageProxy.headers(lines)
        }

        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }

        var contentLength: UInt64? { header("content-length").flatMap { UInt64($0) } }

        func forwardHead(keepAlive: Bool) -> String {
            var s = statusLine + "\r\n"
            for (k, v) in headers where !["connection", "keep-alive", "proxy-connection"].contains(k.lowercased()) { s += "\(k): \(v)\r\n" }
            return s + "Connection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        }
    }
}

/// Reads a socket: an HTTP head up to its blank line, then bodies, keeping what was read past it.
struct SocketReader {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    /// The head up to (not with) its blank line; nil at the end of stream or past 64 KiB.
    mutating func readHead() -> String? {
        while true {
            if let end = SocketReader.find([13, 10, 13, 10], in: buffer) {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                return head
            }
            guard buffer.count < 65536, fill() else { return nil }
        }
    }

    /// Up to `max` bytes; nil at the end of stream.
    mutating func read(max: Int) -> [UInt8]? {
        if buffer.isEmpty, !fill() { return nil }
        let n = min(max, buffer.count)
        let out = Array(buffer[..<n])
        buffer.removeFirst(n)
        return out
    }

    private mutating func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        // ACK at once what comes (TCP_QUICKACK, which Linux clears again as it likes, so set before
        // each read): apt-cacher-ng sends an answer's head, then its body, with Nagle's algorithm
        // on, so a small body waited for the delayed ACK of the head, 40 ms per small package.
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &on, socklen_t(MemoryLayout<Int32>.size))
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            buffer += chunk[..<n]
            return true
        }
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }
}
