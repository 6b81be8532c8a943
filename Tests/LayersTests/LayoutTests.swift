import Foundation
import Host
@testable import Layers
import OCI
import Testing
import TestSupport

@Suite("OCI image layout")
struct LayoutTests {
    /// A two-layer image with every config field, tagged `v1`, in a new layout.
    func makeImage(_ t: TempDir, compression: LayerCompression = .gzip, tag: String = "v1") throws -> (ImageLayout, [StoredLayer]) {
        let base = try t.sub("base"), upper = try t.sub("upper")
        _ = try sh("mkdir -p etc bin; echo base > etc/os-release; echo '#!/bin/sh' > bin/hello; chmod 755 bin/hello", cwd: base)
        // srv/numbers (3.9 MB) spans several gzip members, so the reference tools read a multi-member layer.
        _ = try sh("mkdir -p srv etc; echo data > srv/data; echo app > etc/app; seq 1 600000 > srv/numbers", cwd: upper)
        let layout = try ImageLayout.create(at: t.path + "/layout")
        let l1 = try LayerCapture.capture(.tree(base), into: layout.blobs, options: CaptureOptions(compression: compression)).layer
        let l2 = try LayerCapture.capture(.tree(upper), into: layout.blobs, options: CaptureOptions(compression: compression)).layer
        let config = ContainerConfig(user: "1000:1000", exposedPorts: ["8080/tcp"], env: ["PATH=/usr/bin:/bin", "MODE=test"],
                                     entrypoint: ["/bin/hello"], cmd: ["--flag"], volumes: ["/srv"], workingDir: "/srv",
                                     labels: ["org.example.kind": "test"])
        let history = [
            History(created: "2024-01-01T00:00:00Z", createdBy: "FROM scratch (base)"),
            History(created: "2024-01-01T00:00:00Z", createdBy: "ENV MODE=test", emptyLayer: true),
            History(created: "2024-01-01T00:00:00Z", createdBy: "RUN make srv"),
        ]
        try layout.writeImage(layers: [l1, l2], config: config, history: history, created: "2024-01-01T00:00:00Z", tag: tag)
        return (layout, [l1, l2])
    }

    @Test("a written layout reads back: index, manifest, config with diff_ids, history and run settings")
    func readBack() throws {
        let t = try TempDir("layout"); defer { t.cleanup() }
        let (layout, layers) = try makeImage(t)
        let again = try ImageLayout(opening: layout.path)
        let img = try again.image(tag: "v1")
        #expect(img.manifest.layers == layers.map(\.descriptor))
        #expect(img.config.rootfs.diffIDs == layers.map(\.diffID))
        #expect(img.config.history?.count == 3)
        #expect(img.config.history?[1].emptyLayer == true)
        #expect(img.config.config?.env == ["PATH=/usr/bin:/bin", "MODE=test"])
        #expect(img.config.config?.exposedPorts?.keys.sorted() == ["8080/tcp"])
        #expect(img.manifestDescriptor.refName == "v1")
        // JSON with sorted keys, so the same image gives the same digest.
        let raw = String(decoding: try again.blobs.read(img.manifest.config), as: UTF8.self)
        #expect(raw.range(of: "\"architecture\"")!.lowerBound < raw.range(of: "\"config\"")!.lowerBound)
        #expect(raw.contains("\"diff_ids\"") && raw.contains("\"empty_layer\":true") && raw.contains("\"ExposedPorts\":{\"8080/tcp\":{}}"))
        #expect(throws: OCIError.self) { try again.image(tag: "missing") }
    }

    @Test("a store shared by two images keeps one copy of their common layer")
    func sharedStore() throws {
        let t = try TempDir("layout"); defer { t.cleanup() }
        let (layout, layers) = try makeImage(t)
        let extra = try t.sub("extra")
        try write(extra + "/more", "more")
        let l3 = try LayerCapture.capture(.tree(extra), into: layout.blobs).layer
        try layout.writeImage(layers: [layers[0], l3], config: nil,
                              history: [History(createdBy: "base"), History(createdBy: "more")], created: nil, tag: "v2")
        #expect(try layout.images().compactMap(\.tag).sorted() == ["v1", "v2"])
        // 3 layers + 2 configs + 2 manifests.
        #expect(try layout.blobs.list().count == 7)
        // Retagging replaces the old entry instead of adding one.
        try layout.writeImage(layers: [layers[0]], config: nil, history: [History(createdBy: "base")], created: nil, tag: "v2")
        #expect(try layout.index().manifests.count == 2)
    }

    @Test("skopeo inspects and copies the layout, and the copy reads back here", arguments: [LayerCompression.gzip, .zstd, .none])
    func skopeo(compression: LayerCompression) throws {
        try #require(haveTool("skopeo"), "skopeo is installed by scripts/install-deps.sh")
        let t = try TempDir("skopeo"); defer { t.cleanup() }
        let (layout, layers) = try makeImage(t, compression: compression)
        let inspect = try run(["skopeo", "inspect", "oci:\(layout.path):v1"])
        #expect(inspect.status == 0, "\(inspect.output)")
        for l in layers { #expect(inspect.output.contains(l.descriptor.digest.description)) }
        let copy = try run(["skopeo", "copy", "--quiet", "oci:\(layout.path):v1", "oci:\(t.path)/copy:again"])
        #expect(copy.status == 0, "\(copy.output)")
        let back = try ImageLayout(opening: t.path + "/copy").image(tag: "again")
        #expect(back.config.rootfs.diffIDs == layers.map(\.diffID))
        for d in back.manifest.layers { try ImageLayout(opening: t.path + "/copy").blobs.verify(d) }
    }

    @Test("umoci unpacks the layout into the same tree (root)", .enabled(if: isRoot, "umoci unpack keeps owners only as root"))
    func umoci() throws {
        try #require(haveTool("umoci"), "umoci is installed by scripts/install-deps.sh")
        let t = try TempDir("umoci"); defer { t.cleanup() }
        let (layout, _) = try makeImage(t)
        let r = try run(["umoci", "unpack", "--image", "\(layout.path):v1", t.path + "/bundle"])
        #expect(r.status == 0, "\(r.output)")
        let out = try sh("cat rootfs/etc/os-release rootfs/etc/app rootfs/srv/data; test -x rootfs/bin/hello; seq 1 600000 | cmp - rootfs/srv/numbers", cwd: t.path + "/bundle")
        #expect(out.status == 0 && out.output.hasSuffix("base\napp\ndata\n"), "\(out.output)")
        let config = try String(contentsOfFile: t.path + "/bundle/config.json", encoding: .utf8)
        #expect(config.contains("MODE=test") && config.contains("/bin/hello"))
    }

    @Test("buildah pulls the layout, and the layout buildah pushes reads back here and unpacks the same (root)",
          .enabled(if: isRoot, "buildah's storage needs root"))
    func buildah() throws {
        try #require(haveTool("buildah"), "buildah is installed by scripts/install-deps.sh")
        let t = try TempDir(lowercase: "buildah"); defer { t.cleanup() }
        let (layout, _) = try makeImage(t)
        let storage = ["buildah", "--root", t.path + "/storage", "--runroot", t.path + "/run", "--storage-driver", "vfs"]
        let pull = try run(storage + ["pull", "-q", "oci:\(layout.path):v1"])
        #expect(pull.status == 0, "\(pull.output)")
        let id = pull.output.split(separator: "\n").last.map(String.init) ?? ""
        let push = try run(storage + ["push", "-q", id, "oci:\(t.path)/pushed:back"])
        #expect(push.status == 0, "\(push.output)")
        let back = try ImageLayout(opening: t.path + "/pushed")
        let img = try back.image(tag: "back")
        #expect(img.manifest.layers.count == 2)
        #expect(img.config.config?.entrypoint == ["/bin/hello"])
        let a = try t.sub("a"), b = try t.sub("b")
        for d in try layout.image(tag: "v1").manifest.layers { try LayerApply.apply(layer: layout.blobs.path(of: d.digest), to: a, expecting: d.digest) }
        for d in img.manifest.layers { try LayerApply.apply(layer: back.blobs.path(of: d.digest), to: b, expecting: d.digest) }
        #expect(try describeTree(a) == describeTree(b))
        _ = try run(storage + ["rmi", "-a", "-f"])
    }

    @Test("an image index inside the layout (a multi-platform image) resolves to this machine's platform")
    func nestedIndex() throws {
        let t = try TempDir("layout"); defer { t.cleanup() }
        let (layout, _) = try makeImage(t)
        var ours = try layout.resolve(tag: "v1")
        ours.annotations = nil
        ours.platform = .current
        // A second manifest for another platform, with its own config.
        let other = ImageConfig(platform: Platform(architecture: "riscv64", os: "linux"), rootfs: RootFS(diffIDs: []), history: [])
        let oc = try layout.putJSON(other, mediaType: MediaType.imageConfig)
        var om = try layout.putJSON(Manifest(config: oc, layers: []), mediaType: MediaType.imageManifest)
        om.platform = Platform(architecture: "riscv64", os: "linux")
        let nested = try layout.putJSON(Index(manifests: [om, ours]), mediaType: MediaType.imageIndex)
        try layout.tag(nested, as: "multi")
        let img = try layout.image(tag: "multi")
        #expect(img.manifestDescriptor.digest == ours.digest)
        #expect(img.config.architecture == Platform.current.architecture)
    }
}
