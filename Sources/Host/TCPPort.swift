import Foundation

/// TCP ports on 127.0.0.1: a free one to forward, and whether a server answers on one.
public enum TCPPort {
    /// A TCP port on 127.0.0.1 nothing listens on now.
    public static func free() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HostError.io(path: "socket", message: String(cString: strerror(errno))) }
        defer { close(fd) }
        var addr = loopback(port: 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw HostError.io(path: "127.0.0.1", message: "no free TCP port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Whether a server answers on 127.0.0.1:`port`: at least one byte comes back, either a
    /// greeting it sends first (MariaDB, SSH) within `greeting` seconds or the answer to an HTTP
    /// request. A connection that is accepted and closed with no byte does not count: QEMU's
    /// user network accepts on the host side even while nothing listens in the guest.
    public static func answers(port: Int, greeting: Double = 1, reply: Double = 3) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = loopback(port: port)
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { return false }
        switch readSome(fd, seconds: greeting) {
        case .some(true): return true
        case .some(false): return false // closed with nothing said
        case .none: break
        }
        let request = Array("GET / HTTP/1.0\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return false }
        return readSome(fd, seconds: reply) == true
    }

    /// true: bytes came; false: the peer closed (or failed); nil: nothing within `seconds`.
    static func readSome(_ fd: Int32, seconds: Double) -> Bool? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(seconds * 1000)) > 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0
    }

    static func loopback(port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return addr
    }
}
