import Foundation
import Testing
import TestSupport

/// Issue 17, the base at the floor: a container base made now is the base root itself, the
/// lowest branch of the steps' overlays (nothing copied), so that the first step starts at once;
/// the base layer's capture and compression run beside it, and the image, the bundle and a
/// failed build are as they were.
extension BuildTests {
    @Test func aFreshBaseLayerIsTheRootItselfAndIsCapturedBesideTheFirstStep() throws {
        let dir = try TempDir("base-layer", in: Self.scratch)
        defer { dir.cleanup() }
        // A cache of its own, holding only the base root: the base layer is made in it.
        let cache = try cacheWithBase(dir, "cache")
        let out = dir.file("tiny")
        let r = try build(Self.tiny, output: out, cache: cache, arguments: ["--images", "container"])
        try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        #expect(r.stderr.contains("captured beside the first steps"), "\(r.stderr.suffix(2000))")
        let report = try readJSON(out + "/report.json")
        let base = try #require((report["base"] as? [String: Any])?["container"] as? [String: Any])
        #expect(base["cacheHit"] as? Bool == false)
        let seconds = try #require(base["seconds"] as? Double), built = try #require(base["builtSeconds"] as? Double)
        let beside = try #require(base["besideStepsSeconds"] as? Double, "a base made now says how long its capture ran beside the steps: \(base)")
        #expect(beside > 0 && abs(built - (seconds + beside)) < 0.05, "seconds \(seconds) + beside \(beside) = built \(built)")

        // The base's driver layer (the one without a parent) is the base root in the cache, by
        // reference: the same entries as the layer's tar, captured from it beside the first step.
        let layers = "\(cache)/containers/overlay/layers"
        let ids = try FileManager.default.contentsOfDirectory(atPath: layers)
        let baseLayer = try #require(ids.first { !FileManager.default.fileExists(atPath: "\(layers)/\($0)/parent") })
        let blob = try #require(base["layerDigest"] as? String).replacingOccurrences(of: "sha256:", with: "")
        let listed = try HostTool.run("tar", package: "tar", ["-tzf", "\(out)/oci/blobs/sha256/\(blob)"])
        #expect(listed.status == 0)
        let diff = try FileManager.default.destinationOfSymbolicLink(atPath: "\(layers)/\(baseLayer)/diff")
        #expect(diff.hasPrefix("\(cache)/bases/") && diff.hasSuffix("/root"), "\(diff)")
        let find = try HostTool.run("find", package: "findutils", ["-H", "\(layers)/\(baseLayer)/diff", "-mindepth", "1"])
        let (inTar, inLayer) = (listed.stdout.split(separator: "\n").count, find.stdout.split(separator: "\n").count)
        #expect(inTar > 1000 && inTar == inLayer, "the base layer's tar has \(inTar) entries, its driver layer \(inLayer)")

        // The image is whole: umoci unpacks it, and runc runs the bundle (the base's files came
        // into it before the steps').
        let umoci = try HostTool.run("umoci", package: "umoci", ["unpack", "--image", "\(out)/oci:tiny", dir.file("unpacked")])
        #expect(umoci.status == 0, "umoci unpack: \(umoci.output)")
        let id = "imgbench-e2e-\(UUID().uuidString.prefix(8).lowercased())"
        let runc = try HostTool.run("runc", package: "runc", ["run", "--bundle", "\(out)/bundle", id])
        _ = try? HostTool.run("runc", package: "runc", ["delete", "--force", id])
        #expect(runc.status == 0 && runc.stdout == "tiny says: hello from a RUN step\n", "runc run: \(runc.output)")

        // A step that fails while the capture runs: the build fails at the step's line and leaves
        // nothing, and the capture, which had its own work to finish, is recorded whole.
        let mark = "base-\(UInt32.random(in: 0...UInt32.max))"
        let failing = try writeRecipe(dir, "failing", Self.head + "RUN echo \(mark) > /etc/mark && exit 3\n")
        let other = try cacheWithBase(dir, "other")
        let f = try build(failing, output: dir.file("failed"), cache: other, arguments: ["--images", "container"])
        #expect(f.status != 0)
        #expect(f.stderr.contains("Containerfile:4"), "\(f.stderr.suffix(1500))")
        #expect(!FileManager.default.fileExists(atPath: dir.file("failed")))
        expectNothingLeft(under: [other, dir.path], marker: mark)
        let again = try build(Self.tiny, output: dir.file("again"), cache: other, arguments: ["--images", "container"])
        try #require(again.status == 0, "\(again.stderr.suffix(2000))")
        let hit = (try readJSON(dir.file("again/report.json"))["base"] as? [String: Any])?["container"] as? [String: Any]
        #expect(hit?["cacheHit"] as? Bool == true && hit?["besideStepsSeconds"] == nil, "\(hit ?? [:])")
    }

    /// A base made by mmdebstrap now (a cache of its own, the packages from the suite's package
    /// cache): its large files are compressed while mmdebstrap runs, the base layer's capture
    /// takes those members, and the blob is the one a capture of the root alone gives.
    @Test func aBaseMadeNowIsCompressedWhileMmdebstrapMakesIt() throws {
        let dir = try TempDir("base-early", in: Self.scratch)
        defer { dir.cleanup() }
        let cache = try dir.sub("cache")
        try FileManager.default.createDirectory(atPath: "\(Self.cache)/packages", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(cache)/packages", withDestinationPath: "\(Self.cache)/packages")
        let out = dir.file("tiny")
        let r = try build(Self.tiny, output: out, cache: cache, arguments: ["--images", "container"])
        try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        #expect(r.stderr.contains("compressed while mmdebstrap made the root"), "\(r.stderr.suffix(2000))")
        let report = try readJSON(out + "/report.json")
        let base = try #require((report["base"] as? [String: Any])?["container"] as? [String: Any])
        let early = try #require(base["earlyCompressedBytes"] as? Int, "\(base)")
        #expect(early > 10 << 20, "the root's large files (libc, perl, systemd's libraries): \(early) bytes")

        let roots = try FileManager.default.contentsOfDirectory(atPath: "\(cache)/bases").filter {
            FileManager.default.fileExists(atPath: "\(cache)/bases/\($0)/root/etc/debian_version")
        }
        let root = try #require(roots.first, "the base root in \(cache)/bases")
        let blob = dir.file("root.tar.gz")
        let c = try imgbench("layers", "capture", "\(cache)/bases/\(root)/root", "-o", blob, "--compression", "gzip")
        try #require(c.status == 0, "\(c.output)")
        let digest = try #require(base["layerDigest"] as? String)
        let sum = try HostTool.run("sha256sum", package: "coreutils", [blob])
        #expect(sum.stdout.hasPrefix(digest.replacingOccurrences(of: "sha256:", with: "")), "the build's \(digest), alone: \(sum.stdout)")
    }
}
