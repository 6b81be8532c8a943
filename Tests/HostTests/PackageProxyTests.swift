import Foundation
import Testing
@testable import Host
import TestSupport

/// The package cache's proxy against a real HTTP server (the test's own): what it keeps, what it
/// passes through, and that a kept file is served again when the archive is gone.
@Suite struct PackageProxyTests {
    func curl(_ proxy: PackageProxy, _ urls: [String], into dir: String) throws -> Command.Result {
        var argv = ["curl", "-sS", "--fail", "--create-dirs", "-x", "http://127.0.0.1:\(proxy.port)"]
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
        // Asked for again at once, on a new connection, while the first fetch may still be made
        // durable beside it: it waits for that, and gets the kept file.
        let second = try curl(proxy, [server.url(String(encoded.dropFirst()))], into: dir.file("second"))
        #expect(second.status == 0 && FileManager.default.contents(atPath: dir.file("second/got-0")) == content, "\(second.output)")
        var c = proxy.current
        #expect(c.fetchedBytes == UInt64(content.count) && c.fetchedFiles == 1 && c.reusedFiles == 1 && c.passedBytes == 15, "\(c)")
        let kept = dir.file("packages/127.0.0.1_\(server.port)\(deb)")
        #expect(FileManager.default.contents(atPath: kept) == content)
        #expect(!FileManager.default.fileExists(atPath: dir.file("packages/127.0.0.1_\(server.port)/debian/dists/bookworm/InRelease")))

        // The archive gone: the package still comes, from the folder; InRelease cannot. Serving
        // it touches it: its mtime is its last use, what `imgbench cache prune` goes by.
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -90 * 86_400)], ofItemAtPath: kept)
        server.stop()
        let again = try curl(proxy, [server.url(String(encoded.dropFirst()))], into: dir.path)
        #expect(again.status == 0, "\(again.output)")
        #expect(FileManager.default.contents(atPath: dir.file("got-0")) == content)
        c = proxy.current
        #expect(c.reusedBytes == 2 * UInt64(content.count) && c.reusedFiles == 2 && c.fetchedFiles == 1, "\(c)")
        let served = try #require(try FileManager.default.attributesOfItem(atPath: kept)[.modificationDate] as? Date)
        #expect(served.timeIntervalSinceNow > -3600, "\(served)")
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
        #expect(proxy.current.fetchedFiles == 1, "once the kept files are settled: \(proxy.current)")
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

    /// Behind a site's apt-cacher-ng or a company's proxy (`http_proxy`): the archive is reached
    /// through it, a kept file still comes from the folder the next time, and `no_proxy`'s hosts
    /// are reached directly. The upstream proxy here is a second PackageProxy, a real HTTP proxy
    /// that counts what went through it.
    @Test func theArchiveIsReachedThroughTheUpstreamProxyUnlessNoProxyNamesIt() throws {
        let dir = try TempDir()
        let archive = dir.file("archive")
        let deb = "/debian/pool/main/h/hello/hello_2.10-3_amd64.deb"
        try FileManager.default.createDirectory(atPath: archive + "/debian/pool/main/h/hello", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: archive + "/debian/dists/bookworm", withIntermediateDirectories: true)
        let content = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        try content.write(to: URL(fileURLWithPath: archive + deb))
        try Data("Origin: Debian\n".utf8).write(to: URL(fileURLWithPath: archive + "/debian/dists/bookworm/InRelease"))
        let server = try LocalFileServer(root: archive)
        defer { server.stop() }
        let site = PackageProxy(folder: dir.file("site"))
        try site.start()
        defer { site.stop() }
        let through = try #require(try PackageProxy.UpstreamProxy.from(environment: ["http_proxy": "http://127.0.0.1:\(site.port)/"]))
        let proxy = PackageProxy(folder: dir.file("packages"), through: through)
        try proxy.start()
        defer { proxy.stop() }

        let r = try curl(proxy, [server.url(String(deb.dropFirst())), server.url("debian/dists/bookworm/InRelease")], into: dir.path)
        #expect(r.status == 0, "\(r.output)")
        #expect(FileManager.default.contents(atPath: dir.file("got-0")) == content)
        #expect(FileManager.default.contents(atPath: dir.file("got-1")) == Data("Origin: Debian\n".utf8))
        #expect(proxy.current.fetchedFiles == 1 && proxy.current.passedBytes == 15, "\(proxy.current)")
        #expect(site.current.fetchedFiles == 1 && site.current.passedBytes == 15, "both went through the upstream proxy: \(site.current)")
        // Kept by the archive's host and path, as without the upstream proxy.
        #expect(FileManager.default.contents(atPath: dir.file("packages/127.0.0.1_\(server.port)\(deb)")) == content)

        // Kept: the next request never reaches the upstream proxy.
        let again = try curl(proxy, [server.url(String(deb.dropFirst()))], into: dir.path)
        #expect(again.status == 0, "\(again.output)")
        #expect(proxy.current.reusedFiles == 1 && site.current.fetchedFiles == 1 && site.current.reusedFiles == 0, "\(site.current)")

        // no_proxy names the archive's host: reached directly, the upstream proxy sees nothing.
        let direct = PackageProxy(folder: dir.file("direct"), through: try PackageProxy.UpstreamProxy.from(
            environment: ["http_proxy": "127.0.0.1:\(site.port)", "no_proxy": "localhost, 127.0.0.1"]))
        try direct.start()
        defer { direct.stop() }
        let before = site.current
        let d = try curl(direct, [server.url(String(deb.dropFirst()))], into: dir.path)
        #expect(d.status == 0 && FileManager.default.contents(atPath: dir.file("got-0")) == content, "\(d.output)")
        #expect(site.current == before && direct.current.fetchedFiles == 1)

        // The upstream proxy gone: a clear 502 that names it.
        site.stop()
        let gone = PackageProxy(folder: dir.file("gone"), through: through)
        try gone.start()
        defer { gone.stop() }
        let g = try Command.run(["curl", "-sS", "-x", "http://127.0.0.1:\(gone.port)", server.url("debian/dists/bookworm/InRelease")], timeout: 60)
        #expect(g.output.contains("through the proxy http://127.0.0.1:\(site.port)/ (http_proxy)"), "\(g.output)")
    }

    @Test func httpProxyIsReadAsAptAndCurlReadIt() throws {
        #expect(try PackageProxy.UpstreamProxy.from(environment: [:]) == nil)
        #expect(try PackageProxy.UpstreamProxy.from(environment: ["http_proxy": " "]) == nil)
        let p = try #require(try PackageProxy.UpstreamProxy.from(environment: [
            "HTTP_PROXY": "http://ci:p%40ss@Cache.Example:3142/", "NO_PROXY": "localhost,.internal, 10.0.0.1:8080"]))
        #expect(p.host == "cache.example" && p.port == 3142 && p.description == "http://cache.example:3142/")
        #expect(p.authorization == "Basic " + Data("ci:p@ss".utf8).base64EncodedString())
        #expect(p.carries("deb.debian.org") && !p.carries("mirror.internal") && !p.carries("localhost") && !p.carries("10.0.0.1"))
        #expect(try PackageProxy.UpstreamProxy.from(environment: ["http_proxy": "proxy.example"])?.port == 80)
        #expect(try PackageProxy.UpstreamProxy.from(environment: ["http_proxy": "x:3128", "no_proxy": "*"])?.carries("deb.debian.org") == false)
        for bad in ["https://proxy.example:3128", "socks5://proxy:1080", "http://proxy:port", "http://proxy:3128/path", "http://:3128"] {
            #expect(throws: HostError.self, "\(bad)") { try PackageProxy.UpstreamProxy.from(environment: ["http_proxy": bad]) }
        }
        do {
            _ = try PackageProxy.UpstreamProxy.from(environment: ["http_proxy": "https://proxy.example:3128"])
        } catch {
            #expect("\(error)".hasPrefix("http_proxy: 'https://proxy.example:3128' is not an http:// proxy"), "\(error)")
        }
        // Through it, a request names the archive in absolute form with the proxy's credentials,
        // and never the client's own.
        let r = try #require(PackageProxy.Request("GET http://deb.debian.org/debian/pool/x.deb HTTP/1.1\r\nProxy-Authorization: Basic c3RlcDpzdGVw"))
        let text = r.upstream(try #require(r.target), keepRange: false, through: p)
        #expect(text.hasPrefix("GET http://deb.debian.org/debian/pool/x.deb HTTP/1.1\r\nHost: deb.debian.org\r\nProxy-Authorization: Basic Y2k6cEBzcw==\r\n"), "\(text)")
        #expect(!text.contains("c3RlcDpzdGVw"))
    }
}
