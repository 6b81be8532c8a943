import Foundation

/// A TCP proxy on 127.0.0.1 in front of a port that drops connections mid-request: once more
/// than `dropAfter` bytes have come from the client on one connection, it closes both sides,
/// `drops` times in all (then it relays every byte). A registry that loses the connection in the
/// middle of an upload, for the client's retries. With `busy`, it first answers that many
/// connections itself with an HTTP status (429 or a 5xx, with `Retry-After` when given) and
/// closes them: a registry that is overloaded for a while.
public final class DroppingProxy: @unchecked Sendable {
    /// An answer the proxy gives in the registry's place, `times` times.
    public struct Busy: Sendable {
        public var status: Int
        public var retryAfter: Int?
        public var times: Int

        public init(status: Int, retryAfter: Int? = nil, times: Int) {
            (self.status, self.retryAfter, self.times) = (status, retryAfter, times)
        }
    }

    public let port: UInt16
    let target: UInt16
    let dropAfter: Int
    private let listener: Int32
    private let lock = NSLock()
    private var dropsLeft: Int
    private var droppedCount = 0
    private var busy: Busy?
    private var answeredCount = 0

    /// How many connections it has dropped.
    public var dropped: Int { lock.withLock { droppedCount } }
    /// How many requests it has answered itself (`busy`).
    public var answered: Int { lock.withLock { answeredCount } }

    public init(to target: UInt16, dropAfter: Int, drops: Int = .max, busy: Busy? = nil) throws {
        self.target = target
        self.dropAfter = dropAfter
        self.busy = busy
        dropsLeft = drops
        (listener, port) = try LocalRegistry.listen()
        LocalRegistry.serve(listener) { [self] client in
            // A TLS handshake (a client trying https first) goes to the registry, which refuses it.
            var first: UInt8 = 0
            let tls = recv(client, &first, 1, Int32(MSG_PEEK)) == 1 && first == 0x16
            if !tls, let answer = takeBusy() { refuse(client, answer) } else { relay(client) }
        }
    }

    public func close() {
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
    }

    func relay(_ client: Int32) {
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = LocalRegistry.loopback(target)
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        } }
        guard connected else { Glibc.close(client); Glibc.close(server); return }
        Thread.detachNewThread { [self] in pump(from: client, to: server, counting: true) }
        Thread.detachNewThread { [self] in pump(from: server, to: client, counting: false) }
    }

    /// Copies bytes one way until either side closes; the client's side may be dropped.
    func pump(from a: Int32, to b: Int32, counting: Bool) {
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        var total = 0
        while true {
            let n = read(a, &buffer, buffer.count)
            if n <= 0 { break }
            total += n
            if counting, total > dropAfter, takeDrop() { break }
            if buffer.withUnsafeBytes({ write(b, $0.baseAddress, n) }) != n { break }
        }
        shutdown(a, Int32(SHUT_RDWR))
        shutdown(b, Int32(SHUT_RDWR))
        if counting { usleep(100_000); Glibc.close(a); Glibc.close(b) }
    }

    /// Reads the request's head, answers with the busy status and closes the connection.
    func refuse(_ client: Int32, _ answer: Busy) {
        _ = LocalRegistry.readHead(client)
        let reason = answer.status == 429 ? "Too Many Requests" : "Service Unavailable"
        LocalRegistry.respond(client, status: "\(answer.status) \(reason)", headers: answer.retryAfter.map { ["Retry-After: \($0)"] } ?? [])
        Glibc.close(client)
    }

    private func takeBusy() -> Busy? {
        lock.withLock {
            guard let b = busy, b.times > 0 else { return nil }
            busy?.times -= 1
            answeredCount += 1
            return b
        }
    }

    private func takeDrop() -> Bool {
        lock.withLock {
            guard dropsLeft > 0 else { return false }
            dropsLeft -= 1
            droppedCount += 1
            return true
        }
    }
}
