import Foundation
import Host
@testable import Layers
import OCI
import Testing
import TestSupport

@Suite("hostile tars")
struct HostileTarTests {
    /// Writes entries as an uncompressed tar with the module's own writer (which writes any name
    /// it is given), applies it, and returns the error.
    func applyHostile(_ entries: [LayerEntry], in t: TempDir) throws -> LayersError? {
        let target = try t.sub("sandbox/target")
        let tar = t.path + "/hostile.tar"
        let sink = try FileSink(path: tar)
        try LayerCapture.writeTar(entries, to: sink, path: tar, epoch: nil)
        try sink.finish()
        do {
            try LayerApply.apply(layer: tar, to: target)
            return nil
        } catch let e as LayersError {
            return e
        }
    }

    /// Nothing but the target (and what it holds) appeared beside it or in `outside`.
    func nothingOutside(_ t: TempDir) throws {
        #expect(try FileSystem.children(t.path + "/sandbox") == ["target"])
        #expect(try FileSystem.children(t.path + "/outside") == [])
    }

    func entry(_ path: String, _ kind: LayerEntry.Kind = .regular) -> LayerEntry {
        var e = LayerEntry(path: path, kind: kind)
        if kind == .regular { e.source = "/dev/null" }
        return e
    }

    @Test("traversal by .. is refused and names the entry")
    func dotdot() throws {
        let t = try TempDir("hostile"); defer { t.cleanup() }
        _ = try t.sub("outside")
        let e = try applyHostile([entry("ok"), entry("../../outside/evil")], in: t)
        #expect(e?.description.contains("../../outside/evil") == true)
        #expect(e?.description.contains("..") == true)
        try nothingOutside(t)
    }

    @Test("an absolute path is refused")
    func absolute() throws {
        let t = try TempDir("hostile"); defer { t.cleanup() }
        let outside = try t.sub("outside")
        let e = try applyHostile([entry(outside + "/evil")], in: t)
        guard case .unsafeEntry(_, let name, let reason)? = e else { Issue.record("not refused: \(String(describing: e))"); return }
        #expect(name == outside + "/evil")
        #expect(reason.contains("absolute"))
        try nothingOutside(t)
    }

    @Test("writing through a symlink is refused, and so is a symlink pointing above the root")
    func throughSymlink() throws {
        let t = try TempDir("hostile"); defer { t.cleanup() }
        let outside = try t.sub("outside")
        let e = try applyHostile([entry("link", .symlink(target: outside)), entry("link/evil")], in: t)
        guard case .unsafeEntry(_, "link/evil", let reason)? = e else { Issue.record("not refused: \(String(describing: e))"); return }
        #expect(reason.contains("symlink"))
        try nothingOutside(t)

        let t2 = try TempDir("hostile"); defer { t2.cleanup() }
        _ = try t2.sub("outside")
        let e2 = try applyHostile([entry("a/up", .symlink(target: "../../../outside"))], in: t2)
        guard case .unsafeEntry(_, "a/up", _)? = e2 else { Issue.record("not refused: \(String(describing: e2))"); return }
        try nothingOutside(t2)
    }

    @Test("a hardlink to anything but an earlier entry of the layer is refused")
    func hardlinkOutside() throws {
        let t = try TempDir("hostile"); defer { t.cleanup() }
        let outside = try t.sub("outside")
        try write(outside + "/../secret", "secret")
        for target in ["../secret", outside + "/../secret", "not-in-layer"] {
            let e = try applyHostile([entry("evil", .hardlink(target: target))], in: t)
            guard case .unsafeEntry(_, "evil", _)? = e else { Issue.record("not refused: \(target): \(String(describing: e))"); continue }
        }
        // A symlink made by the layer does not let a hardlink reach through it either.
        let e = try applyHostile([entry("s", .symlink(target: "/")), entry("evil", .hardlink(target: "s/secret"))], in: t)
        #expect(e != nil)
        #expect(try FileSystem.children(t.path + "/sandbox") == ["target"])
        #expect(try FileSystem.children(outside) == [])
    }

    @Test("device nodes are refused when not root", arguments: [
        LayerEntry.Kind.characterDevice(major: 1, minor: 3), .blockDevice(major: 7, minor: 0),
    ])
    func devicesWithoutRoot(kind: LayerEntry.Kind) throws {
        let t = try TempDir("hostile"); defer { t.cleanup() }
        _ = try t.sub("outside")
        let target = try t.sub("sandbox/target")
        let tar = t.path + "/devices.tar"
        let sink = try FileSink(path: tar)
        try LayerCapture.writeTar([entry("ok"), entry("dev/node", kind)], to: sink, path: tar, epoch: nil)
        try sink.finish()
        do {
            _ = try LayerApply.apply(layer: tar, to: target, expecting: nil, progress: nil, asRoot: false)
            Issue.record("a device node was applied without root")
        } catch let LayersError.unsupportedEntry(_, name, reason) {
            #expect(name == "dev/node")
            #expect(reason.contains("root"))
        }
        #expect(!FileSystem.exists(target + "/dev/node"))
    }

    @Test("a corrupt layer is an error naming the file, and a wrong digest is caught")
    func corrupt() throws {
        let t = try TempDir("corrupt"); defer { t.cleanup() }
        let src = try t.sub("src")
        _ = try sh("head -c 300000 /dev/urandom > f", cwd: src)
        let store = BlobStore(root: try t.sub("store"))
        let r = try LayerCapture.capture(.tree(src), into: store)
        let blob = store.path(of: r.layer.descriptor.digest)
        let cut = t.path + "/cut.tar.gz"
        _ = try sh("head -c 100000 '\(blob)' > '\(cut)'")
        #expect(throws: LayersError.self) { try LayerApply.apply(layer: cut, to: try t.sub("dst1")) }
        #expect(throws: OCIError.self) { try store.verify(Descriptor(mediaType: MediaType.layerGzip, digest: r.layer.descriptor.digest, size: 5)) }
        _ = try sh("printf x | dd of='\(blob)' bs=1 seek=5000 conv=notrunc 2>/dev/null")
        #expect(throws: OCIError.self) { try store.verify(r.layer.descriptor) }
    }
}
