import Foundation
import Host
#if canImport(Glibc)
import Glibc
#endif

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers GET with the files of a folder (404 for
/// anything else), for tests that fetch from the network without one: what ADD URL downloads,
/// and a git repository over git's dumb HTTP protocol (`git update-server-info` first).
public final class LocalFileServer: @unchecked Sendable {
    public let root: String
    public let port: UInt16
    private let listener: Int32

    public init(root: String) throws {
        self.root = root
        (listener, port) = try LocalRegistry.listen()
        let root = self.root
        LocalRegistry.serve(listener) { fd in
            defer { close(fd) }
            let head = LocalRegistry.readHead(fd)
            let words = head.split(separator: " ", maxSplits: 2)
            guard words.count >= 2, words[0] == "GET" else { return LocalRegistry.respond(fd, status: "405 Method Not Allowed") }
            // Percent-encoding decoded, as a web server reads a path (apt encodes a version's `+`).
            let raw = String(words[1].split(separator: "?", maxSplits: 1)[0])
            let path = raw.removingPercentEncoding ?? raw
            guard !path.contains(".."), let body = FileManager.default.contents(atPath: root + path) else {
                return LocalRegistry.respond(fd, status: "404 Not Found")
            }
            let text = ["HTTP/1.1 200 OK", "Content-Type: application/octet-stream", "Content-Length: \(body.count)", "Connection: close", "", ""]
                .joined(separator: "\r\n")
            // A client that hangs up early ends the answer; the test sees what it read.
            try? (Data(text.utf8) + body).withUnsafeBytes { try FileSystem.writeAll(fd, $0, path: "the client socket") }
            shutdown(fd, Int32(SHUT_WR))
        }
    }

    public func url(_ path: String) -> String { "http://127.0.0.1:\(port)/\(path)" }

    public func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }
}
