import Foundation
import Testing
import TestSupport

/// `FROM REGISTRY/REPO:TAG` and `FROM REGISTRY/REPO@sha256:...` against Debian's docker-registry
/// (TestSupport's `LocalRegistry`): the base is Recipes/tiny's image, copied there by skopeo.
/// Part of the serialized `BuildTests`, whose cache it shares.
extension BuildTests {
    @Test(.enabled(if: LocalRegistry.isAvailable, "needs docker-registry, openssl and htpasswd (scripts/install-deps.sh)"))
    func aRegistryBaseStartsTheImageWithItsLayersAndIsCachedByDigest() throws {
        let registry = try LocalRegistry()
        let dir = try TempDir("registry-base", in: Self.scratch)
        let built = try build(Self.tiny, output: dir.file("tiny"), arguments: ["--target", "container"])
        try #require(built.status == 0, "imgbench build: \(built.stderr.suffix(2000))")
        let ref = "\(registry.address)/imgbench/base:v1"
        _ = try Self.skopeo(["copy", "--dest-tls-verify=false", "oci:\(dir.file("tiny"))/oci:tiny", "docker://\(ref)"])
        let pushed = try Self.inspect("docker://\(ref)")

        let step = "RUN cat /opt/tiny/greeting.txt > /copied\n"
        let derived = try writeRecipe(dir, "derived", "# vm-size=1G\n# vm-kernel=host\nFROM \(ref)\n" + step)
        let first = try build(derived, output: dir.file("derived-out"))
        try #require(first.status == 0, "FROM \(ref): \(first.stderr.suffix(3000))")
        let image = try Self.inspect("oci:\(dir.file("derived-out"))/oci:derived")
        #expect(image.layers.count == pushed.layers.count + 1 && Array(image.layers.prefix(pushed.layers.count)) == pushed.layers,
                "the base's layers \(pushed.layers), the image's \(image.layers)")
        #expect(try readReport(dir.file("derived-out")).steps.allSatisfy { $0.vm != nil }, "the step ran on the VM too")

        // By digest: the same base (the same keys), from the cache.
        let pinned = try writeRecipe(dir, "pinned", "# vm-size=1G\n# vm-kernel=host\nFROM \(registry.address)/imgbench/base@\(pushed.digest)\n" + step)
        let second = try build(pinned, output: dir.file("pinned-out"))
        try #require(second.status == 0, "FROM ...@\(pushed.digest): \(second.stderr.suffix(3000))")
        let (a, b) = (try readReport(dir.file("derived-out")), try readReport(dir.file("pinned-out")))
        #expect(a.base.key == b.base.key && b.base.container?.cacheHit == true && b.totals.cacheMisses == 0, "\(second.stderr.suffix(2000))")

        let missing = try writeRecipe(dir, "missing", "FROM \(registry.address)/imgbench/base:nope\n" + step)
        let r = try build(missing, output: dir.file("missing-out"), progress: "none")
        #expect(r.status == 1 && r.errorLines.count == 1 && r.stderr.hasPrefix("imgbench: error: \(missing)/Containerfile:1")
                && r.stderr.contains("repository imgbench/base: manifest nope not found"), "\(r.stderr)")
    }

    /// The manifest digest and layer digests `skopeo inspect` gives for an image.
    static func inspect(_ image: String) throws -> (digest: String, layers: [String]) {
        let text = try skopeo(["inspect"] + (image.hasPrefix("docker://") ? ["--tls-verify=false"] : []) + [image])
        let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        return (json?["Digest"] as? String ?? "", json?["Layers"] as? [String] ?? [])
    }
}
