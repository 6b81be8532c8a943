import Foundation

/// A TCP proxy on 127.0.0.1 in front of a port that drops connections mid-request: once more
/// than `dropAfter` bytes have come from the client on one connection, it closes both sides,
/// `drops` times in all (then it relays every byte). A registry that loses the connection in the
/// middle of an upload, for the client's retries.
public final class DroppingProxy: @unchecked Sendable {
    public let port: UInt16
    let target: UInt16
    let dropAfter: Int
    private let listener: Int32
    private let lock = NSLock()
    private var dropsLeft: Int
    private var droppedCount = 0

    /// How many connections it has dropped.
    public var dropped: Int { lock.withLock { droppedCount } }

    public init(to target: UInt16, dropAfter: Int, drops: Int = .max) throws {
        self.target = target
        self.dropAfter = dropAfter
        dropsLeft = drops
        port = try LocalRegistry.freePort()
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = LocalRegistry.loopback(port)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        } }
        guard bound, listen(listener, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        let l = listener
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(l, nil, nil)
                if client < 0 { return }
                relay(client)
            }
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

    private func takeDrop() -> Bool {
        lock.withLock {
            guard dropsLeft > 0 else { return false }
            dropsLeft -= 1
            droppedCount += 1
            return true
        }
    }
}
