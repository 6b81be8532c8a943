import Foundation
import Host

/// Debian's apt-cacher-ng on 127.0.0.1 at a free port: the site-wide package proxy a build
/// reaches the archive through (`http_proxy`). Its cache, configuration and logs live in a
/// temporary folder; `stop()` (or deinit) ends it.
public final class AptCacherNg: @unchecked Sendable {
    public static let program = "/usr/sbin/apt-cacher-ng"
    /// Whether the tests can start one (the package apt-cacher-ng is installed).
    public static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: program) }

    public let folder: TempDir
    public let port: UInt16
    private var process: Process?

    /// What `http_proxy` says to reach it.
    public var url: String { "http://127.0.0.1:\(port)/" }

    public init() throws {
        folder = try TempDir("apt-cacher-ng")
        port = try Self.freePortBelow32768()
        try FileManager.default.createDirectory(atPath: folder.file("cache"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: folder.file("log"), withIntermediateDirectories: true)
        // No Remap lines: files are cached by the host and path apt asked for, whichever
        // mirror the host's sources name.
        try """
            CacheDir: \(folder.file("cache"))
            LogDir: \(folder.file("log"))
            SupportDir: /usr/lib/apt-cacher-ng
            Port: \(port)
            BindAddress: 127.0.0.1
            PidFile: \(folder.file("pid"))
            SocketPath: \(folder.file("socket"))
            ForeGround: 1

            """.write(toFile: folder.file("acng.conf"), atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.program)
        p.arguments = ["-c", folder.path]
        FileManager.default.createFile(atPath: folder.file("out.log"), contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: folder.file("out.log")))
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
        for _ in 0..<100 {
            if LocalRegistry.accepts(port) { return }
            guard p.isRunning else { break }
            usleep(100_000)
        }
        stop()
        throw MissingTool(description: "apt-cacher-ng did not listen on 127.0.0.1:\(port): \(output)")
    }

    deinit { stop() }

    /// apt-cacher-ng 3.7 cannot bind a port of 32768 or more ("Error resolving address for
    /// binding"), and the kernel's free ports start there: one below it that binds now.
    static func freePortBelow32768() throws -> UInt16 {
        for _ in 0..<200 {
            let port = UInt16.random(in: 20000...32767)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = LocalRegistry.loopback(port)
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 } }
            if ok { return port }
        }
        throw MissingTool(description: "no free port below 32768 on 127.0.0.1 for apt-cacher-ng")
    }

    public func stop() {
        guard let p = process else { return }
        process = nil
        // SIGKILL: it inherits the test thread's signal mask, in which SIGTERM is blocked, and
        // it never ends on terminate(); the cache it leaves is the test's to remove.
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    /// Its transfer log: one line per file it served, `TIME|KIND|BYTES|CLIENT|HOST/PATH`.
    public var transfers: [String] {
        ((try? String(contentsOfFile: folder.file("log/apt-cacher.log"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    /// What it printed, for a failing test's message.
    public var output: String { (try? String(contentsOfFile: folder.file("out.log"), encoding: .utf8)) ?? "" }
}
