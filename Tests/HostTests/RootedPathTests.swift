import Foundation
@testable import Host
import Testing
import TestSupport

// Paths resolved inside a root as if it were `/`: what keeps COPY, WORKDIR and the VM side's
// writes from following an image's symlink onto the host.

@Suite struct RootedPathTests {
    let dir: TempDir
    var root: String { dir.path }

    init() throws {
        dir = try TempDir("rooted")
        _ = try dir.sub("usr/bin")
        _ = try dir.sub("etc")
        symlink("usr/bin", dir.file("bin"))
        symlink("/tmp/x", dir.file("abs"))           // an absolute target: the root's /tmp/x
        symlink("../../../..", dir.file("etc/up"))    // climbs: stops at the root
        symlink("/", dir.file("rootlink"))
        symlink("loop2", dir.file("loop1"))
        symlink("loop1", dir.file("loop2"))
    }

    @Test func plainPathsAreTheRootPlusThePath() throws {
        #expect(try RootedPath.resolve("/usr/bin/env", in: root) == "\(root)/usr/bin/env")
        #expect(try RootedPath.resolve("usr/./bin/", in: root) == "\(root)/usr/bin")
        #expect(try RootedPath.resolve("/", in: root) == root)
        #expect(try RootedPath.resolve("/../../etc", in: root) == "\(root)/etc")
    }

    @Test func symlinksAreFollowedAsIfTheRootWereSlash() throws {
        #expect(try RootedPath.resolve("/bin/sh", in: root) == "\(root)/usr/bin/sh")
        #expect(try RootedPath.resolve("/abs/payload", in: root) == "\(root)/tmp/x/payload")
        #expect(try RootedPath.resolve("/abs", in: root) == "\(root)/tmp/x")
        #expect(try RootedPath.resolve("/etc/up/etc/shadow", in: root) == "\(root)/etc/shadow")
        #expect(try RootedPath.resolve("/rootlink/rootlink/etc", in: root) == "\(root)/etc")
    }

    @Test func theLastSymlinkIsKeptWhenAsked() throws {
        #expect(try RootedPath.resolve("/abs", in: root, followLast: false) == "\(root)/abs")
        #expect(try RootedPath.resolve("/bin/abs", in: root, followLast: false) == "\(root)/usr/bin/abs")
    }

    @Test func aLoopIsAnErrorNamingThePath() throws {
        #expect(throws: HostError.self) { try RootedPath.resolve("/loop1/x", in: root) }
    }

    @Test func withinComparesWholeComponents() {
        #expect(RootedPath.isWithin("/a/b/c", "/a/b"))
        #expect(RootedPath.isWithin("/a/b", "/a/b/"))
        #expect(!RootedPath.isWithin("/a/bc", "/a/b"))
        #expect(RootedPath.isWithin("/anything", "/"))
    }
}
