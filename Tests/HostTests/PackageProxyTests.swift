import Foundation
import Testing
import Host
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
}
