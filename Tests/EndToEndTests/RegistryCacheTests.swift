import Foundation
import Testing
import TestSupport

/// `--cache-to` and `--cache-from` against Debian's docker-registry (TestSupport's
/// `LocalRegistry`): machine A (the suite's cache) fills the registry, machine B (an empty
/// cache) builds Recipes/tiny from it. Part of the serialized `BuildTests`.
extension BuildTests {
    @Test(.enabled(if: LocalRegistry.isAvailable, "needs docker-registry, openssl and htpasswd (scripts/install-deps.sh)"))
    func anEmptyCacheGetsEveryStepFromTheRegistryAndTheSameImage() throws {
        // Over TLS (a CA the test made, given with --cert-dir) and basic auth from $REGISTRY_AUTH_FILE.
        let registry = try LocalRegistry(tls: true)
        let access = ["--cert-dir", try #require(registry.certDir)]
        let env = Self.epoch.merging(["REGISTRY_AUTH_FILE": try registry.authFile()]) { $1 }
        let dir = try TempDir("registry-cache", in: Self.scratch)
        let repo = "\(registry.address)/imgbench/cache"
        let a = try build(Self.tiny, output: dir.file("a"), environment: env, arguments: ["--cache-to", repo] + access)
        try #require(a.status == 0, "machine A, --cache-to: \(a.stderr.suffix(3000))")
        let b = try build(Self.tiny, output: dir.file("b"), cache: dir.file("cache-b"), environment: env, arguments: ["--cache-from", repo] + access)
        try #require(b.status == 0, "machine B, --cache-from: \(b.stderr.suffix(3000))")
        let (ra, rb) = (try readReport(dir.file("a")), try readReport(dir.file("b")))
        // Every entry comes from the registry, the base's layer and disk too, so B makes no base root.
        #expect(rb.base.container?.cacheHit == true && rb.base.vm?.cacheHit == true, "\(b.stderr.suffix(2000))")
        #expect(rb.steps.allSatisfy { ($0.container?.cacheHit ?? true) && ($0.vm?.cacheHit ?? true) }, "\(b.stderr.suffix(2000))")
        #expect(rb.finalisation?.vm?.cacheHit == true)
        #expect(!b.stderr.contains("mmdebstrap") && !b.stderr.contains("warning"), "\(b.stderr.suffix(2000))")
        let bases = (try? FileManager.default.contentsOfDirectory(atPath: dir.file("cache-b/bases"))) ?? []
        #expect(bases.allSatisfy { !FileManager.default.fileExists(atPath: dir.file("cache-b/bases/\($0)/root")) }, "\(bases)")
        #expect(ra.outputs.imageDigest != nil && ra.outputs.imageDigest == rb.outputs.imageDigest)
        try Qemu.imgOK("compare", "-f", "qcow2", "-F", "qcow2", dir.file("a/vm/disk.qcow2"), dir.file("b/vm/disk.qcow2"))
        try expectCacheVerifies(dir.file("cache-b"))
        try expectLeftoverFetchIsFound(in: dir.file("cache-b"), key: try #require(rb.steps.first { $0.container != nil }?.key))
        let bad = try build(Self.tiny, output: dir.file("c"), progress: "none", arguments: ["--cache-to", repo + ":v1"])
        #expect(bad.status != 0 && bad.stderr.contains("give a repository (REGISTRY/REPO), without a tag"), "\(bad.stderr)")

        // A registry that is gone: the build goes on with its local cache, saying so once.
        registry.stop()
        let recipe = try TempDir("registry-cache-gone", in: Self.scratch)
        try write(recipe.file("Containerfile"), Self.head + "RUN echo \(UInt64.random(in: 0...UInt64.max)) > /a\nRUN echo b > /b\n")
        let gone = try build(recipe.path, output: dir.file("gone"), progress: "none", environment: env, arguments: ["--cache-from", repo] + access)
        #expect(gone.status == 0, "\(gone.stderr.suffix(2000))")
        let warnings = gone.stderr.components(separatedBy: "\n").filter { $0.hasPrefix("imgbench: warning: --cache-from \(repo)") }
        #expect(warnings.count == 1 && warnings[0].contains("connection refused"), "\(gone.stderr.suffix(2000))")
    }

    /// A `.fetch` folder that a killed build left (its entry's lock free) is a finding of
    /// `cache verify`, removed by `--repair`.
    func expectLeftoverFetchIsFound(in cache: String, key: String) throws {
        let leftover = "\(cache)/containers/layers/\(key).fetch"
        try FileManager.default.createDirectory(atPath: leftover + "/.fetch", withIntermediateDirectories: true)
        let found = try imgbench("cache", "verify", "--cache", cache)
        #expect(found.status == 1 && found.output.contains("\(key).fetch"), "\(found.output)")
        let repaired = try imgbench("cache", "verify", "--repair", "--cache", cache)
        #expect(!FileManager.default.fileExists(atPath: leftover), "\(repaired.output)")
        try expectCacheVerifies(cache)
    }
}

extension BuildTests {
    /// The steps of an earlier stage go through the remote cache as the target's do: a machine
    /// with an empty cache runs none of them.
    @Test(.enabled(if: LocalRegistry.isAvailable, "needs docker-registry (scripts/install-deps.sh)"))
    func theStepsOfAnEarlierStageComeFromTheRegistryToo() throws {
        let registry = try LocalRegistry()
        let dir = try TempDir("registry-cache-stages", in: Self.scratch)
        let repo = "\(registry.address)/imgbench/stages"
        let marker = UInt64.random(in: 0...UInt64.max)
        let recipe = try writeRecipe(dir, "staged", "FROM debian:bookworm AS made\nRUN echo \(marker) > /made\n"
            + "FROM debian:bookworm\nCOPY --from=made /made /made\n")
        let a = try build(recipe, output: dir.file("a"), environment: Self.epoch, arguments: ["--images", "container", "--cache-to", repo])
        try #require(a.status == 0, "machine A: \(a.stderr.suffix(3000))")
        let b = try build(recipe, output: dir.file("b"), progress: "plain", cache: dir.file("cache-b"), environment: Self.epoch,
                          arguments: ["--images", "container", "--cache-from", repo])
        try #require(b.status == 0, "machine B: \(b.stderr.suffix(3000))")
        let lines = b.stderr.components(separatedBy: "\n")
        let stageStep = try #require(lines.firstIndex { $0.contains("stage made") && $0.contains("RUN echo \(marker)") }, "\(b.stderr.suffix(2000))")
        #expect(lines[(stageStep + 1)...].first { $0.contains(" in ") }?.contains("cached") == true, "\(b.stderr.suffix(2000))")
        #expect(try readReport(dir.file("a")).outputs.imageDigest == readReport(dir.file("b")).outputs.imageDigest)
    }
}
