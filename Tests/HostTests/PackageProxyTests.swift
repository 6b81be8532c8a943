import Foundation
import Testing
@testable import Host
import TestSupport

/// The package cache's proxy against a real HTTP server (the test's own): what it keeps, what it
/// passes through, and that a kept file is served again when the archive is gone.
@Suite struct PackageProxyTests {
    func curl(_ proxy: PackageProxy, _ urls: [String], into dir: String) throws -> Command.Result {
        var argv = ["curl", "-sS", "--fail", "-x", "http://127.0.0.1:\(proxy.port)"]
        for (i, u) in urls.enumerated() { argv += ["-o", "\(dir)/got-\(i)", u] }
        return try Command.run(argv, timeout: 60)
    }

    @Test func aPackageIsFetchedOnceAndServedFromTheFolderEvenWithTheArchiveGone() throws {
        let dir = try TempDir()
        let archive = dir.file("archive")
        // apt writes a version's `+` percent-encoded; the file is kept under its decoded name.
        let deb = "/debian/pool/main/h/hello/hello_2.10-3+b1_amd64.deb"
        try FileManager.default.createDirectory(atPath: archive + "/debian/pool/main/h/hello", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: archive + "/debian/dists/bookworm", withIntermediateDirectories: true)
        let content = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try content.write(to: URL(fileURLWithPath: archive + deb))
        try Data("Origin: Debian\n".utf8).write(to: URL(fileURLWithPath: archive + "/debian/dists/bookworm/InRelease"))
        let server = try LocalFileServer(root: archive)
        let proxy = PackageProxy(folder: dir.file("packages"))
        try proxy.start()
        defer { proxy.stop() }

        // The package and the InRelease over one connection: the package kept, InRelease passed.
        let encoded = deb.replacingOccurrences(of: "+", with: "%2b")
        let r = try curl(proxy, [server.url(String(encoded.dropFirst())), server.url("debian/dists/bookworm/InRelease")], into: dir.path)
        #expect(r.status == 0, "\(r.output)")
        #expect(FileManager.default.contents(atPath: dir.file("got-0")) == content)
        #expect(FileManager.default.contents(atPath: dir.file("got-1")) == Data("Origin: Debian\n".utf8))
        let kept = dir.file("packages/127.0.0.1_\(server.port)\(deb)")
        #expect(FileManager.default.contents(atPath: kept) == content)
        #expect(!FileManager.default.fileExists(atPath: dir.file("packages/127.0.0.1_\(server.port)/debian/dists/bookworm/InRelease")))
        var c = proxy.current
        #expect(c.fetchedBytes == UInt64(content.count) && c.fetchedFiles == 1 && c.reusedBytes == 0 && c.passedBytes == 15, "\(c)")

        // The archive gone: the package still comes, from the folder; InRelease cannot.
        server.stop()
        let again = try curl(proxy, [server.url(String(encoded.dropFirst()))], into: dir.path)
        #expect(again.status == 0, "\(again.output)")
        #expect(FileManager.default.contents(atPath: dir.file("got-0")) == content)
        c = proxy.current
        #expect(c.reusedBytes == UInt64(content.count) && c.reusedFiles == 1 && c.fetchedFiles == 1, "\(c)")
        let gone = try curl(proxy, [server.url("debian/dists/bookworm/InRelease")], into: dir.path)
        #expect(gone.status != 0, "InRelease is never kept: with the archive gone it fails")
        let leftovers = try Command.run(["find", dir.file("packages"), "-name", "*.partial-*", "-o", "-name", "*.lock"]).output
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test func aByHashIndexIsKeptOnlyWhenItsContentHasTheHashItsNameSays() throws {
        let dir = try TempDir()
        let archive = dir.file("archive")
        let folder = archive + "/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let good = Data("Package: hello\n".utf8)
        let goodHash = try Command.run(["sh", "-c", "printf 'Package: hello\\n' | sha256sum | cut -d' ' -f1"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        try good.write(to: URL(fileURLWithPath: "\(folder)/\(goodHash)"))
        let liar = String(repeating: "ab", count: 32)
        try Data("not what the name says\n".utf8).write(to: URL(fileURLWithPath: "\(folder)/\(liar)"))
        let server = try LocalFileServer(root: archive)
        defer { server.stop() }
        let proxy = PackageProxy(folder: dir.file("packages"))
        try proxy.start()
        defer { proxy.stop() }
        let base = "debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/"
        let r = try curl(proxy, [server.url(base + goodHash), server.url(base + liar)], into: dir.path)
        #expect(r.status == 0, "\(r.output)")
        let keptFolder = dir.file("packages/127.0.0.1_\(server.port)/\(base)")
        #expect(FileManager.default.fileExists(atPath: keptFolder + goodHash))
        #expect(!FileManager.default.fileExists(atPath: keptFolder + liar), "a file whose hash is not its name is passed on, never kept")
        #expect(FileManager.default.contents(atPath: dir.file("got-1")) == Data("not what the name says\n".utf8))
    }

    /// What a step could ask the proxy for on purpose: nothing outside the folder, and nothing of
    /// its request's framing reaches the archive.
    @Test func aHostileRequestNeitherLeavesTheFolderNorFramesTheArchivesAnswer() throws {
        let proxy = PackageProxy(folder: "/cache/packages")
        for uri in ["http://../debian/pool/x.deb", "http://./pool/x.deb", "http://.hidden/pool/x.deb", "http://a..b/pool/x.deb"] {
            #expect(PackageProxy.Request("GET \(uri) HTTP/1.1")?.target == nil, "\(uri)")
        }
        let ok = try #require(PackageProxy.Request("GET http://deb.debian.org/debian/pool/main/a/%2e%2e/x.deb HTTP/1.1")?.target)
        #expect(proxy.keptPath(ok) == nil, "a segment that decodes to .. is never kept")
        let encoded = try #require(PackageProxy.Request("GET http://deb.debian.org/debian/pool/main/l/libx/libx_1%3a2.0%2bb1_amd64.deb HTTP/1.1")?.target)
        #expect(proxy.keptPath(encoded) == "/cache/packages/deb.debian.org/debian/pool/main/l/libx/libx_1:2.0+b1_amd64.deb")
        let r = try #require(PackageProxy.Request("GET http://deb.debian.org/debian/pool/x.deb HTTP/1.1\r\nContent-Length: 40\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\nAccept-Encoding: gzip\r\nUser-Agent: apt"))
        let kept = r.upstream(try #require(r.target), keepRange: false).lowercased()
        #expect(!kept.contains("content-length") && !kept.contains("expect") && !kept.contains("transfer-encoding") && !kept.contains("accept-encoding"))
        #expect(kept.contains("user-agent: apt") && kept.hasSuffix("connection: keep-alive\r\n\r\n"))
        #expect(r.upstream(try #require(r.target), keepRange: true).hasSuffix("Connection: close\r\n\r\n"), "passed through: closed after its answer")
    }
}
