import Foundation
@testable import Host
@testable import Layers
import OCI
import Testing
import TestSupport

@Suite("releasing mounts", .serialized)
struct InterruptTests {
    /// Loop devices backed by files under `path`, waiting a little for the kernel to detach
    /// autoclear ones whose last user has gone.
    func loopsUnder(_ path: String) throws -> [String] {
        var loops: [String] = []
        for _ in 0..<50 {
            loops = try run(["losetup", "-a"]).output.split(separator: "\n").map(String.init).filter { $0.contains(path) }
            if loops.isEmpty { break }
            usleep(100_000)
        }
        return loops
    }

    func mountsUnder(_ path: String) throws -> [String] {
        try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8).split(separator: "\n")
            .map { String($0.split(separator: " ")[1]) }.filter { $0.hasPrefix(path) }
    }

    @Test("Cleanup.runAll releases what drivers hold: overlay and FUSE mounts, the btrfs loop device (root)",
          .enabled(if: isRoot, "mounting needs root"))
    func cleanupReleases() throws {
        let t = try TempDir("cleanup"); defer { t.cleanup() }
        for name in ["overlay", "fuse-overlayfs", "unionfs", "btrfs"] where StorageDrivers.probe(name).works {
            let d = try StorageDrivers.open(name, store: t.path + "/" + name)
            _ = try d.prepare("base", parent: nil)
            _ = try d.prepare("child", parent: "base")
        }
        #expect(try !mountsUnder(t.path).isEmpty)
        // What runAll does on Ctrl-C, limited to this test's own mounts: tests run in parallel
        // and others have partial blobs registered.
        #expect(!Cleanup.run { $0.contains(t.path) }.isEmpty)
        #expect(try mountsUnder(t.path) == [])
        #expect(try loopsUnder(t.path) == [])
    }

    @Test("Ctrl-C during imgbench drivers --measure leaves nothing mounted (root)",
          .enabled(if: isRoot, "mounting needs root"))
    func interruptedCommand() throws {
        let exe = imgbenchPath
        try #require(FileManager.default.isExecutableFile(atPath: exe), "the imgbench executable is built beside the tests")
        let t = try TempDir("sigint"); defer { t.cleanup() }
        // In a process group of its own, so that SIGINT goes to the group as Ctrl-C on a terminal
        // does, reaching the step's shell too.
        let args = [exe, "drivers", "--measure", "--only", "btrfs", "--store", t.path, "--base-files", "200", "--script", "sleep 30"]
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attr, 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        try #require(posix_spawn(&pid, exe, &actions, &attr, argv, environ) == 0)
        // Wait until the step's writable root is up (the pool mounted), then interrupt.
        let deadline = Date().addingTimeInterval(60)
        while try mountsUnder(t.path).isEmpty && Date() < deadline { usleep(100_000) }
        #expect(try !mountsUnder(t.path).isEmpty)
        usleep(1_500_000)
        kill(-pid, SIGINT)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        #expect((status >> 8) & 0xff == 128 + SIGINT)
        #expect(try mountsUnder(t.path) == [])
        #expect(try loopsUnder(t.path) == [])
    }

    @Test("Ctrl-C during imgbench layers capture leaves no partial layer file")
    func interruptedCapture() throws {
        try #require(FileManager.default.isExecutableFile(atPath: imgbenchPath), "the imgbench executable is built beside the tests")
        let t = try TempDir("sigint-capture"); defer { t.cleanup() }
        let src = try t.sub("src")
        // Sparse: costs no disk, and takes seconds to read and compress.
        #expect(try run(["truncate", "-s", "8G", src + "/zeros"]).status == 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: imgbenchPath)
        p.arguments = ["layers", "capture", src, "-o", t.path + "/layer.tar.gz", "--progress", "none"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(20)
        while !FileSystem.exists(t.path + "/layer.tar.gz.partial") && Date() < deadline && p.isRunning { usleep(20_000) }
        usleep(300_000)
        #expect(p.isRunning, "the capture finished before it could be interrupted")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + SIGINT)
        #expect(try FileSystem.children(t.path) == ["src"])
    }
}
