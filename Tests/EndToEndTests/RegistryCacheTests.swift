import Foundation
import Testing
import TestSupport

/// `--cache-to` and `--cache-from` against Debian's docker-registry (TestSupport's
/// `LocalRegistry`): machine A (the suite's cache) fills the registry, machine B (an empty
/// cache) builds Recipes/tiny from it. Part of the serialized `BuildTests`.
extension BuildTests {
    @Test(.enabled(if: LocalRegistry.isAvailable, "needs docker-registry, openssl and htpasswd (scripts/install-deps.sh)"))
    func anEmptyCacheGetsEveryStepFromTheRegistryAndTheSameImage() throws {
        let registry = try LocalRegistry()
        let dir = try TempDir("registry-cache", in: Self.scratch)
        let repo = "\(registry.address)/imgbench/cache"
        let a = try build(Self.tiny, output: dir.file("a"), environment: Self.epoch, arguments: ["--cache-to", repo])
        try #require(a.status == 0, "machine A, --cache-to: \(a.stderr.suffix(3000))")
        let b = try build(Self.tiny, output: dir.file("b"), cache: dir.file("cache-b"), environment: Self.epoch, arguments: ["--cache-from", repo])
        try #require(b.status == 0, "machine B, --cache-from: \(b.stderr.suffix(3000))")
        let (ra, rb) = (try readReport(dir.file("a")), try readReport(dir.file("b")))
        // The base root is made on B (mmdebstrap); its layer and disk, and every step after, come from the registry.
        #expect(rb.base.container?.cacheHit == true, "\(b.stderr.suffix(2000))")
        #expect(rb.steps.allSatisfy { ($0.container?.cacheHit ?? true) && ($0.vm?.cacheHit ?? true) }, "\(b.stderr.suffix(2000))")
        #expect(rb.finalisation?.vm?.cacheHit == true)
        #expect(ra.outputs.imageDigest != nil && ra.outputs.imageDigest == rb.outputs.imageDigest)
        try Qemu.imgOK("compare", "-f", "qcow2", "-F", "qcow2", dir.file("a/vm/disk.qcow2"), dir.file("b/vm/disk.qcow2"))
        try expectCacheVerifies(dir.file("cache-b"))
        let bad = try build(Self.tiny, output: dir.file("c"), progress: "none", arguments: ["--cache-to", repo + ":v1"])
        #expect(bad.status != 0 && bad.stderr.contains("give a repository (REGISTRY/REPO), without a tag"), "\(bad.stderr)")
    }
}
