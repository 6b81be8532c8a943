import Foundation
import Host
@testable import ImageBuild
import RecipePlan
import Testing
import TestSupport

// COPY and ADD into an image root whose symlinks point at host folders (`evil -> /tmp/…`,
// `app -> /tmp/…`): every write lands inside the root, where the link leads when the root is
// `/`, and nothing appears in the host folders.

@Suite(.serialized) struct CopyIntoRootTests {
    let rootDir: TempDir, ctxDir: TempDir, hostX: TempDir, hostApp: TempDir, hostY: TempDir
    var root: String { rootDir.path }
    var ctx: String { ctxDir.path }
    let copy: ContextCopy

    init() throws {
        rootDir = try TempDir("root")
        ctxDir = try TempDir("ctx")
        hostX = try TempDir("host-x")
        hostApp = try TempDir("host-app")
        hostY = try TempDir("host-y")
        // The base image's own symlinks to absolute paths that exist on the host.
        symlink(hostApp.path, rootDir.file("app"))
        _ = try rootDir.sub("dest")
        symlink(hostY.path, rootDir.file("dest/x"))
        // The context.
        try write(ctxDir.file("payload.txt"), "payload")
        symlink(hostX.path, ctxDir.file("evil"))
        _ = try ctxDir.sub("folder/sub")
        try write(ctxDir.file("folder/f.txt"), "f")
        try write(ctxDir.file("folder/sub/g.txt"), "g")
        _ = try ctxDir.sub("tree/x")
        try write(ctxDir.file("tree/x/h.txt"), "h")
        chmod(ctxDir.file("tree/x"), 0o700)
        copy = ContextCopy(context: ctxDir.path, ignore: ContextIgnore(patterns: []), location: SourceLocation(file: "C", line: 3, column: 1))
    }

    /// `host` as the root sees it: the same absolute path, under the root.
    func inRoot(_ host: TempDir, _ name: String = "") -> String { root + host.path + (name.isEmpty ? "" : "/\(name)") }

    func hostIsUntouched() throws {
        for h in [hostX, hostApp, hostY] {
            #expect(try FileSystem.children(h.path).isEmpty, "written on the host: \(h.path)")
            #expect(try FileSystem.lstat(h.path).st_mode & 0o7777 == 0o755, "mode changed on the host: \(h.path)")
        }
    }

    func apply(_ sources: [String], _ dest: String, add: Bool = false, chown: String? = nil) throws {
        try copy.apply(sources: sources, destination: dest, chown: chown, chmod: nil, add: add, root: root)
    }

    /// A tar of `files` (name: content) in the context, made by tar.
    func makeTar(_ name: String, _ files: [String: String]) throws {
        let stage = try TempDir("tarstage")
        for (f, content) in files {
            try FileSystem.makeDirectories((stage.file(f) as NSString).deletingLastPathComponent)
            try write(stage.file(f), content)
        }
        try Command.check("test tar", ["tar", "-cf", ctxDir.file(name), "-C", stage.path] + files.keys.sorted())
    }

    @Test func copyThroughASymlinkTheRecipeCopiedStaysInTheRoot() throws {
        try apply(["evil"], "/evil")
        #expect(try FileSystem.readlink(rootDir.file("evil")) == hostX.path)
        try apply(["payload.txt"], "/evil/payload.txt")
        try apply(["folder"], "/evil")
        try hostIsUntouched()
        #expect(try String(contentsOfFile: inRoot(hostX, "payload.txt"), encoding: .utf8) == "payload")
        #expect(try String(contentsOfFile: inRoot(hostX, "sub/g.txt"), encoding: .utf8) == "g")
        #expect(FileSystem.exists(inRoot(hostX, "f.txt")))
    }

    @Test func copyThroughABaseImageSymlinkStaysInTheRoot() throws {
        try apply(["payload.txt"], "/app/a.txt")
        try apply(["folder/"], "/app/")
        try hostIsUntouched()
        #expect(FileSystem.exists(inRoot(hostApp, "a.txt")) && FileSystem.exists(inRoot(hostApp, "sub/g.txt")))
    }

    @Test func aCopiedFolderMeetingAnImageSymlinkIsFollowedInsideTheRoot() throws {
        try apply(["tree"], "/dest")
        try hostIsUntouched()
        #expect(try String(contentsOfFile: inRoot(hostY, "h.txt"), encoding: .utf8) == "h")
        #expect(try FileSystem.lstat(inRoot(hostY)).st_mode & 0o7777 == 0o700)
        #expect(try FileSystem.lstat(rootDir.file("dest/x")).isSymlink)
    }

    @Test func aSymlinkAtTheDestinationFileIsReplacedNotFollowed() throws {
        try write(hostX.file("victim"), "host")
        symlink(hostX.file("victim"), rootDir.file("victim"))
        try apply(["payload.txt"], "/victim")
        #expect(try String(contentsOfFile: hostX.file("victim"), encoding: .utf8) == "host")
        #expect(try FileSystem.lstat(rootDir.file("victim")).isRegular)
    }

    @Test func addUnpacksInsideTheRoot() throws {
        try makeTar("payload.tar", ["t.txt": "t", "d/u.txt": "u"])
        try apply(["evil"], "/evil")
        let before = try stages()
        try apply(["payload.tar"], "/evil/", add: true)
        try apply(["payload.tar"], "/app/", add: true)
        #expect(try stages() == before, "a staging folder was left")
        try hostIsUntouched()
        for h in [hostX, hostApp] {
            #expect(try String(contentsOfFile: inRoot(h, "d/u.txt"), encoding: .utf8) == "u")
            #expect(try FileSystem.lstat(inRoot(h, "t.txt")).st_uid == getuid())
        }
    }

    @Test func anArchivesHardLinksStayLinks() throws {
        let stage = try TempDir("tarstage")
        try write(stage.file("one"), "same")
        link(stage.file("one"), stage.file("two"))
        try Command.check("test tar", ["tar", "-cf", ctxDir.file("links.tar"), "-C", stage.path, "one", "two"])
        try apply(["links.tar"], "/app/", add: true)
        try hostIsUntouched()
        let one = try FileSystem.lstat(inRoot(hostApp, "one")), two = try FileSystem.lstat(inRoot(hostApp, "two"))
        #expect(one.st_ino == two.st_ino && one.st_nlink == 2)
    }

    /// The ADD staging folders in the temporary folder now (the suite runs serialized).
    func stages() throws -> Set<String> {
        Set(try FileSystem.children(NSTemporaryDirectory()).filter { $0.hasPrefix("imgbench-add-") })
    }

    @Test func anArchiveCannotWriteThroughItsOwnSymlink() throws {
        // Members: `l -> /`, then `l/<hostX>/probe`.
        let probe = "\(hostX.path)/probe"
        let a = try TempDir("tar-a"), b = try TempDir("tar-b")
        symlink("/", a.file("l"))
        try FileSystem.makeDirectories(b.file("l" + hostX.path))
        try write(b.file("l" + probe), "pwned")
        try Command.check("test tar", ["tar", "-cf", ctxDir.file("evil.tar"), "-C", a.path, "l"])
        try Command.check("test tar", ["tar", "-rf", ctxDir.file("evil.tar"), "-C", b.path, "l" + probe])
        // GNU tar refuses the member (exit 2): the ADD fails, or if it went on, stays inside.
        let before = try stages()
        _ = try? apply(["evil.tar"], "/unpacked/", add: true)
        #expect(try stages() == before, "a staging folder was left after a failure")
        try hostIsUntouched()
        #expect(!FileSystem.exists(probe))
    }

    @Test func aFIFOIsCopiedAsAFIFO() throws {
        #expect(mkfifo(ctxDir.file("pipe"), 0o640) == 0)
        try apply(["evil"], "/evil")
        try apply(["pipe"], "/evil/pipe")
        try apply(["pipe"], "/app/")
        try hostIsUntouched()
        for h in [hostX, hostApp] {
            let st = try FileSystem.lstat(inRoot(h, "pipe"))
            #expect(st.fileType == S_IFIFO && st.st_mode & 0o7777 == 0o640)
        }
    }

    @Test(.enabled(if: getuid() == 0, "mknod of a character device and chown need root"))
    func aDeviceIsCopiedAsADeviceOwnedAsTheCopy() throws {
        #expect(mknod(ctxDir.file("null"), S_IFCHR | 0o600, dev_t(1 << 8 | 3)) == 0)  // 1:3, as /dev/null
        try apply(["null"], "/app/null", chown: "1234:5678")
        try hostIsUntouched()
        let st = try FileSystem.lstat(inRoot(hostApp, "null"))
        #expect(st.fileType == S_IFCHR && st.deviceMajor == 1 && st.deviceMinor == 3)
        #expect(st.st_uid == 1234 && st.st_gid == 5678 && st.st_mode & 0o7777 == 0o600)
    }

    @Test(.enabled(if: getuid() == 0, "chown needs root"))
    func chownKeepsTheSetIDBits() throws {
        try write(ctxDir.file("tool"), "#!/bin/sh\n")
        chmod(ctxDir.file("tool"), 0o4755)
        try apply(["tool"], "/bin/tool", chown: "1234")
        let st = try FileSystem.lstat(rootDir.file("bin/tool"))
        #expect(st.st_uid == 1234 && st.st_gid == 1234 && st.st_mode & 0o7777 == 0o4755)
    }

    @Test func accountsAreReadInsideTheRoot() throws {
        try write(hostX.file("passwd"), "evil:x:4242:4242::/:/bin/sh\n")
        _ = try rootDir.sub("etc")
        symlink(hostX.file("passwd"), rootDir.file("etc/passwd"))
        #expect(ContextCopy.owner("evil", root: root) == nil)
        try FileSystem.makeDirectories(inRoot(hostX))
        try write(inRoot(hostX, "passwd"), "app:x:1000:1001::/:/bin/sh\n")
        #expect(ContextCopy.owner("app", root: root).map { [$0.0, $0.1] } == [1000, 1001])
    }

    @Test func theVMSideWritesListsAndFetchesInsideTheRoot() throws {
        let disk = LocalRoot(root: root)
        _ = try rootDir.sub("etc")
        symlink(hostX.file("fstab"), rootDir.file("etc/fstab"))
        symlink(hostX.path, rootDir.file("boot"))
        try FileSystem.makeDirectories(inRoot(hostX))
        try disk.writeFile("/etc/fstab", "fstab")
        try hostIsUntouched()
        #expect(try String(contentsOfFile: inRoot(hostX, "fstab"), encoding: .utf8) == "fstab")
        #expect(try disk.list("/boot") == ["fstab"])
        let out = try TempDir("fetched")
        try disk.fetch("/boot/fstab", to: out.file("f"))
        #expect(try String(contentsOfFile: out.file("f"), encoding: .utf8) == "fstab")
    }
}
