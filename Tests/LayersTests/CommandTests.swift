import Foundation
import Host
@testable import Layers
import OCI
import Testing
import TestSupport

/// The imgbench executable built beside the test bundle.
let imgbenchPath = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("imgbench").path

@Suite("imgbench layers, oci and drivers commands")
struct CommandTests {
    /// Its exit status, standard output (the JSON asked for) and standard error (progress lines,
    /// which `--progress auto` writes off a terminal too, and errors).
    func imgbench(_ args: String...) throws -> (status: Int32, output: String, errors: String) {
        let r = try runProcess(imgbenchPath, args)
        return (r.status, r.stdout, r.stderr)
    }

    func json(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    @Test("capture into a layout, list, inspect with --verify, apply the image back", .enabled(if: FileManager.default.isExecutableFile(atPath: imgbenchPath)))
    func captureInspectApply() throws {
        let t = try TempDir("cli"); defer { t.cleanup() }
        let src = try t.sub("src")
        _ = try sh("mkdir -p a/b; echo one > a/b/f; ln -s b/f a/l; echo two > top", cwd: src)
        let cap = try imgbench("layers", "capture", src, "--layout", t.path + "/lay:v1", "--format", "json")
        #expect(cap.status == 0, "\(cap.output)\(cap.errors)")
        let capture = try #require(try json(cap.output) as? [String: Any])
        let digest = try #require(capture["digest"] as? String)

        let ls = try imgbench("oci", "ls", t.path + "/lay", "--format", "json")
        let rows = try #require(try json(ls.output) as? [[String: Any]])
        #expect(rows.count == 1 && rows[0]["tag"] as? String == "v1" && rows[0]["layers"] as? Int == 1)

        let inspect = try imgbench("oci", "inspect", t.path + "/lay:v1", "--verify", "--format", "json")
        #expect(inspect.status == 0, "\(inspect.output)\(inspect.errors)")
        let report = try #require(try json(inspect.output) as? [String: Any])
        #expect(report["verified"] as? Bool == true)
        #expect((report["layers"] as? [[String: Any]])?.first?["digest"] as? String == digest)

        let out = t.path + "/out"
        let apply = try imgbench("layers", "apply", "--layout", t.path + "/lay:v1", "--target", out)
        #expect(apply.status == 0, "\(apply.output)\(apply.errors)")
        #expect(try describeTree(out) == describeTree(src))

        let file = t.path + "/layer.tar.zst"
        #expect(try imgbench("layers", "capture", src, "-o", file, "--compression", "zstd").status == 0)
        let li = try imgbench("layers", "inspect", file, "--format", "json")
        let layer = try #require(try json(li.output) as? [String: Any])
        #expect(layer["compression"] as? String == "zstd")
        #expect((layer["entries"] as? [[String: Any]])?.map { $0["path"] as? String } == ["a/", "a/b/", "a/b/f", "a/l", "top"])
    }

    @Test("a hostile layer is refused with one error line naming the entry, and exit status 1", .enabled(if: FileManager.default.isExecutableFile(atPath: imgbenchPath)))
    func hostile() throws {
        let t = try TempDir("cli"); defer { t.cleanup() }
        let tar = t.path + "/evil.tar"
        let sink = try FileSink(path: tar)
        var e = LayerEntry(path: "../evil", kind: .regular)
        e.source = "/dev/null"
        try LayerCapture.writeTar([e], to: sink, path: tar, epoch: nil)
        try sink.finish()
        let r = try imgbench("layers", "apply", tar, "--target", try t.sub("target"))
        #expect(r.status == 1)
        #expect(r.errors.components(separatedBy: "\n").contains { $0.hasPrefix("imgbench: error: ") && $0.contains("entry ../evil refused") }, "\(r.errors)")
        #expect(try FileSystem.children(t.path).sorted() == ["evil.tar", "target"])
    }

    @Test("drivers lists every driver with whether it works and why", .enabled(if: FileManager.default.isExecutableFile(atPath: imgbenchPath)))
    func drivers() throws {
        let r = try imgbench("drivers", "--format", "json")
        #expect(r.status == 0)
        let list = try #require(try json(r.output) as? [[String: Any]])
        #expect(list.compactMap { $0["name"] as? String } == StorageDrivers.names)
        if !Mounts.kernelHas("aufs") {
            let aufs = try #require(list.first { $0["name"] as? String == "aufs" })
            #expect(aufs["works"] as? Bool == false)
        }
    }

    @Test("layers apply --driver unpacks an image onto a driver, reusing layers it has (root)",
          .enabled(if: isRoot && FileManager.default.isExecutableFile(atPath: imgbenchPath), "mounting needs root"))
    func applyOntoDriver() throws {
        let t = try TempDir("cli"); defer { t.cleanup() }
        let src = try t.sub("src")
        try write(src + "/a", "a")
        #expect(try imgbench("layers", "capture", src, "--layout", t.path + "/lay:x").status == 0)
        try write(src + "/b", "b")
        #expect(try imgbench("layers", "capture", src, "--layout", t.path + "/lay:x").status == 0)
        for (round, reused) in [(1, false), (2, true)] {
            let r = try imgbench("layers", "apply", "--layout", t.path + "/lay:x", "--driver", "overlay", "--store", t.path + "/store", "--format", "json")
            #expect(r.status == 0, "\(r.output)\(r.errors)")
            let rows = try #require(try json(r.output) as? [[String: Any]])
            #expect(rows.count == 2 && rows.allSatisfy { $0["reused"] as? Bool == reused }, "round \(round)")
        }
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        #expect(!mounts.contains(t.path))
    }
}
