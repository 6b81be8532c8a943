import Foundation
import Testing
import TestSupport

/// Issue 14: `RUN --mount=type=cache` and `type=tmpfs` on both sides, and here-documents in RUN,
/// on a Debian base (BuildTests' cache, so the base is made once).
extension BuildTests {
    @Test func aCacheMountIsReusedByTheNextBuildAndIsInNoLayerOrDiskBlock() throws {
        let dir = try TempDir("run-mount")
        defer { dir.cleanup() }
        // An id of its own: the cache outlives this test's runs.
        let id = "c14-\(UUID().uuidString.prefix(8))"
        let recipe = try writeRecipe(dir, "mounts", """
            # vm-size=1G
            # vm-kernel=host
            FROM debian:bookworm
            RUN --mount=type=cache,id=\(id),target=/var/cache/demo,sharing=locked --mount=type=tmpfs,target=/scratch,size=8M <<EOF
            set -e
            echo run >> /var/cache/demo/runs
            wc -l < /var/cache/demo/runs > /seen.txt
            echo scratch > /scratch/file
            EOF
            """)
        let first = try build(recipe, output: dir.file("first"))
        #expect(first.status == 0, "\(first.output)")
        let again = try build(recipe, output: dir.file("again"), arguments: ["--no-cache"])
        #expect(again.status == 0, "\(again.output)")
        // Each build runs the step on the container side, then on the VM side, on the same cache.
        let root = dir.file("again") + "/bundle/rootfs"
        #expect(try String(contentsOfFile: "\(root)/seen.txt", encoding: .utf8) == "3\n")
        #expect(!FileManager.default.fileExists(atPath: "\(root)/var/cache/demo/runs"), "the cache mount's content is in the image")
        #expect(!FileManager.default.fileExists(atPath: "\(root)/scratch/file"), "the tmpfs mount's content is in the image")
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", dir.file("again") + "/vm/disk.qcow2", raw)
        #expect(try DiskFile.read(raw, "/seen.txt").content == Data("4\n".utf8))
        #expect(try DiskFile.read(raw, "/var/cache/demo/runs").content == nil, "the cache mount's content is on the disk")
        #expect(try DiskFile.read(raw, "/scratch/file").content == nil, "the tmpfs mount's content is on the disk")
        #expect(try DiskFile.read(raw, "/scratch").content == nil, "the mount point made for the step is left on the disk")
    }
}
