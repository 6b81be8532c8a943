import Foundation
import Testing
import TestSupport

/// The build cache under faults: builds at once, builds killed with SIGKILL, corrupt entries, a
/// full disk, SOURCE_DATE_EPOCH with a warm cache, and `imgbench cache`. Part of the serialized
/// suite `BuildTests`: these build too, and some use its cache.
extension BuildTests {
    static let epoch = ["SOURCE_DATE_EPOCH": "1700000000"]

    // MARK: - Concurrency

    @Test func twoBuildsAtOnceOnAnEmptyCacheBothSucceedAlike() throws {
        let dir = try TempDir("build-together", in: Self.scratch)
        let cache = dir.file("cache")
        let exe = try IMGBenchBinary.path()
        var builds: [RunningProcess] = []
        for name in ["first", "second"] {
            builds.append(try RunningProcess(exe, ["build", Self.tiny, "--cache", cache, "--output", dir.file(name), "--progress", "plain"],
                                             environment: Self.epoch))
            usleep(500_000)
        }
        let results = builds.map { $0.finish(within: 600) }
        for (name, r) in zip(["first", "second"], results) {
            let r = try #require(r, "the \(name) build did not finish within 10 minutes")
            try #require(r.status == 0, "the \(name) build: exit \(r.status)\n\(r.stderr.suffix(3000))")
        }
        #expect(results[1]?.stderr.contains("cache: waiting for another build making") == true, "the second build did not wait for the first")
        let first = try readReport(dir.file("first")), second = try readReport(dir.file("second"))
        #expect(first.outputs.imageDigest != nil && first.outputs.imageDigest == second.outputs.imageDigest)
        try Qemu.imgOK("compare", "\(dir.file("first"))/vm/disk.qcow2", "\(dir.file("second"))/vm/disk.qcow2")
        try expectCacheVerifies(cache)
        expectNothingLeft(under: [cache, dir.path], marker: "imgbench-together-\(getpid())")
    }

    // MARK: - Killed builds

    @Test func buildsKilledAtRandomPointsThenARebuildEqualsACleanBuild() throws {
        let dir = try TempDir("build-killed", in: Self.scratch)
        let clean = try cacheWithBase(dir, "clean"), killed = try cacheWithBase(dir, "killed")
        let started = Date()
        let reference = try build(Self.tiny, output: dir.file("clean-out"), cache: clean, environment: Self.epoch)
        try #require(reference.status == 0, "\(reference.stderr.suffix(3000))")
        let seconds = Date().timeIntervalSince(started)
        var rng = SeededRandom(seed: 13)
        let out = dir.file("out")
        for round in 1...3 {
            let p = try RunningProcess(try IMGBenchBinary.path(), ["build", Self.tiny, "--cache", killed, "--output", out, "--progress", "plain"],
                                       environment: Self.epoch)
            let delay = 0.2 + seconds * Double(rng.below(1000)) / 1000
            _ = p.wait(upTo: delay) { _, _ in false }
            kill(p.pid, SIGKILL)
            let r = p.finish(within: 60)
            #expect(p.signal == SIGKILL || r?.status == 0, "round \(round): \(r?.stderr.suffix(2000) ?? "")")
        }
        let rebuilt = try build(Self.tiny, output: out, cache: killed, environment: Self.epoch)
        try #require(rebuilt.status == 0, "the rebuild after the kills: exit \(rebuilt.status)\n\(rebuilt.stderr.suffix(3000))")
        #expect(try readReport(out).outputs.imageDigest == readReport(dir.file("clean-out")).outputs.imageDigest)
        try expectSameDisks(out, dir.file("clean-out"))
        try expectCacheVerifies(killed)
        expectNothingLeft(under: [killed, dir.path], marker: "imgbench-killed-\(getpid())")
    }

    // MARK: - Corrupt entries

    @Test func aTruncatedBlobAndACorruptLinkAreMadeAgainNotUsed() throws {
        let dir = try TempDir("build-corrupt", in: Self.scratch)
        let cache = try cacheWithBase(dir, "cache")
        let first = try build(Self.tiny, output: dir.file("first"), cache: cache, environment: Self.epoch)
        try #require(first.status == 0, "\(first.stderr.suffix(3000))")
        let report = try readReport(dir.file("first"))
        let step = try #require(report.steps.first { $0.instruction.hasPrefix("RUN echo") })
        let blob = "\(cache)/containers/blobs/sha256/\(try #require(step.container?.layerDigest).dropFirst(7))"
        let size = try #require(FileManager.default.attributesOfItem(atPath: blob)[.size] as? Int)
        try #require(truncate(blob, off_t(size / 2)) == 0)
        let vm = try #require(FileManager.default.contentsOfDirectory(atPath: "\(cache)/vm").first)
        let link = "\(cache)/vm/\(vm)/\(step.key).qcow2"
        let linkSize = try #require(FileManager.default.attributesOfItem(atPath: link)[.size] as? Int)
        var rng = SeededRandom(seed: 5)
        try patch(link, at: UInt64(linkSize - 4096), rng.bytes(512))

        let verify = try imgbench("cache", "verify", "--cache", cache)
        #expect(verify.status == 1 && verify.stdout.contains(step.key) && verify.stdout.contains("containers/layers/\(step.key)"),
                "cache verify: exit \(verify.status): \(verify.output)")
        let again = try build(Self.tiny, output: dir.file("again"), cache: cache, environment: Self.epoch)
        try #require(again.status == 0, "\(again.stderr.suffix(3000))")
        #expect(again.stderr.contains("is not usable"), "no note of the bad entries: \(again.stderr.suffix(2000))")
        let rebuilt = try #require(try readReport(dir.file("again")).steps.first { $0.index == step.index })
        #expect(rebuilt.container?.cacheHit == false && rebuilt.vm?.cacheHit == false, "a bad entry was used: \(rebuilt)")
        #expect(try readReport(dir.file("again")).outputs.imageDigest == report.outputs.imageDigest)
        try expectSameDisks(dir.file("first"), dir.file("again"))
        try expectCacheVerifies(cache)
    }

    @Test func aBaseImageThatFailsToUnpackLeavesNoPartialRoot() throws {
        let dir = try TempDir("build-badbase", in: Self.scratch)
        // The suite's cache outlives runs: what older imgbench versions or killed runs left in it
        // (links and driver layers without records) is removed first, so the check at the end
        // is of what this build left.
        let repaired = try imgbench("cache", "verify", "--repair", "--cache", Self.cache)
        try #require(repaired.status == 0, "\(repaired.output)")
        // An image no earlier build had (its own `created`): with the base entries of a known
        // image in the cache, a build would not unpack the base at all.
        let unique = ["SOURCE_DATE_EPOCH": "\(1_600_000_000 + Int.random(in: 0..<100_000_000))"]
        let built = try build(Self.tiny, output: dir.file("tiny"), environment: unique, arguments: ["--images", "container"])
        try #require(built.status == 0, "\(built.stderr.suffix(3000))")
        // A copy of the layout (its blobs are hard links into the cache) whose last layer is cut short.
        let layout = dir.file("layout")
        try runOK("cp", package: "coreutils", ["-r", "\(dir.file("tiny"))/oci", layout])
        let report = try readReport(dir.file("tiny"))
        let digests = report.steps.compactMap { step in step.container?.layerDigest }
        let last = try #require(digests.last)
        try #require(truncate("\(layout)/blobs/sha256/\(last.dropFirst(7))", 100) == 0)
        let recipe = try writeRecipe(dir, "onbad", "# vm-size=1G\n# vm-kernel=host\nFROM oci:\(layout):tiny\nRUN true\n")
        let r = try build(recipe, output: dir.file("out"), progress: "none")
        #expect(r.status == 1 && r.errorLines.count == 1 && r.stderr.hasPrefix("imgbench: error: \(recipe)/Containerfile:3:"), "\(r.stderr)")
        let bases = (try? FileManager.default.contentsOfDirectory(atPath: "\(Self.cache)/bases")) ?? []
        for b in bases where b.hasPrefix("oci-") {
            let inside = (try? FileManager.default.contentsOfDirectory(atPath: "\(Self.cache)/bases/\(b)")) ?? []
            #expect(!inside.contains("root.partial"), "bases/\(b)/root.partial is left")
        }
        try expectCacheVerifies(Self.cache)
    }

    // MARK: - A full disk

    @Test func aFullDiskFailsClearlyAndLeavesTheCacheValid() throws {
        let dir = try TempDir("build-full", in: Self.scratch)
        let image = dir.file("small.ext4"), mnt = try dir.sub("mnt")
        try #require(FileManager.default.createFile(atPath: image, contents: nil) && truncate(image, 96 << 20) == 0)
        try runOK("mkfs.ext4", package: "e2fsprogs", ["-q", "-F", image])
        try runOK("mount", package: "mount", ["-o", "loop", image, mnt])
        defer { _ = try? HostTool.run("umount", package: "mount", [mnt]) }
        var rng = SeededRandom(seed: 28)
        let recipe = try writeRecipe(dir, "full", "# vm-size=256M\n# vm-kernel=host\nFROM scratch\nCOPY big /big\n")
        try writeFile("\(recipe)/big", rng.bytes(100 << 20))
        for (target, what) in [("container", "making the container layer of COPY big /big"), ("vm", "making the VM disk's link of COPY big /big")] {
            let r = try build(recipe, output: "\(mnt)/out", progress: "none", cache: "\(mnt)/cache", arguments: ["--images", target])
            #expect(r.status == 1, "\(target): exit \(r.status): \(r.stderr)")
            #expect(r.errorLines.count == 1 && r.stderr.hasPrefix("imgbench: error: \(recipe)/Containerfile:4:1: \(what)"), "\(target): \(r.stderr)")
            #expect(r.stderr.contains("No space left on device") || r.stderr.contains("no space left"), "\(target): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: "\(mnt)/out") && !FileManager.default.fileExists(atPath: "\(mnt)/out.partial"))
            try expectCacheVerifies("\(mnt)/cache")
            expectNothingLeft(under: ["\(mnt)/cache"], marker: "imgbench-full-\(getpid())")
        }
    }

    // MARK: - SOURCE_DATE_EPOCH

    @Test func underOneSourceDateEpochAWarmCacheGivesTheDigestOfAnEmptyOne() throws {
        let dir = try TempDir("build-epoch", in: Self.scratch)
        let warm = try cacheWithBase(dir, "warm"), cold = try cacheWithBase(dir, "cold")
        let unset = try build(Self.tiny, output: dir.file("unset"), cache: warm)
        try #require(unset.status == 0, "\(unset.stderr.suffix(3000))")
        for (cache, out) in [(warm, "warm-out"), (cold, "cold-out")] {
            let r = try build(Self.tiny, output: dir.file(out), cache: cache, environment: Self.epoch)
            try #require(r.status == 0, "\(out): \(r.stderr.suffix(3000))")
        }
        let fromWarm = try readReport(dir.file("warm-out")), fromCold = try readReport(dir.file("cold-out"))
        #expect(fromWarm.outputs.imageDigest != nil && fromWarm.outputs.imageDigest == fromCold.outputs.imageDigest)
        try expectSameDisks(dir.file("warm-out"), dir.file("cold-out"))
    }

    // MARK: - imgbench cache

    @Test func cacheDuVerifyAndPruneWhileABuildHoldsTheCache() throws {
        let dir = try TempDir("build-prune", in: Self.scratch)
        let cache = try cacheWithBase(dir, "cache")
        let other = try writeRecipe(dir, "other", Self.head + "RUN echo other > /other.txt\n")
        for recipe in [other, Self.tiny] {
            let r = try build(recipe, output: dir.file("out"), cache: cache)
            try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        }
        let du = try imgbench("cache", "du", "--cache", cache, "--format", "json")
        let tinyEntries = try decodeJSON(Usage.self, du.stdout).recipes.first { $0.name == "tiny" }?.entries ?? 0
        let usage = try decodeJSON(Usage.self, du.stdout)
        #expect(Set(usage.kinds.map(\.name)) == ["bases", "blobs", "boot files", "container layers", "vm links"], "\(du.output)")
        #expect(Set(usage.recipes.map(\.name)).isSuperset(of: ["other", "tiny"]) && usage.totalBytes > 0, "\(du.output)")
        try expectCacheVerifies(cache)

        // A build held in its second step while prune removes every entry no build holds.
        let held = try writeRecipe(dir, "held", Self.head + "RUN echo other > /other.txt\nRUN sleep 8 && echo held-\(getpid())\n")
        let p = try RunningProcess(try IMGBenchBinary.path(), ["build", held, "--cache", cache, "--output", dir.file("held-out"), "--progress", "plain"])
        let waited = p.wait(upTo: 120) { _, err in err.contains("] RUN sleep 8") }
        let prune = try imgbench("cache", "prune", "--cache", cache, "--keep-days", "0")
        let r = try #require(p.finish(within: 300), "the held build did not finish")
        try #require(waited, "the held build never reached its second step: \(r.stderr.suffix(2000))")
        #expect(prune.status == 0 && prune.stdout.contains("removed"), "cache prune: \(prune.output)")
        #expect(r.status == 0, "the build that held the cache failed after prune: \(r.stderr.suffix(3000))")
        let report = try readReport(dir.file("held-out"))
        #expect(report.base.container?.cacheHit == true && report.steps.first?.container?.cacheHit == true, "prune removed what the build held")
        let after = try decodeJSON(Usage.self, try imgbench("cache", "du", "--cache", cache, "--format", "json").stdout)
        // What is left of tiny is what the held build shares with it: the base layer and disk, and
        // the base root, which the steps' overlays stand on also when the base layer is cached.
        #expect(after.recipes.first { $0.name == "tiny" }?.entries == 3 && tinyEntries > 3, "tiny's own entries were not pruned: \(after.recipes)")
        try expectCacheVerifies(cache)
    }

    // MARK: - Helpers

    /// What `imgbench cache du --format json` prints, as these tests read it.
    struct Usage: Decodable {
        struct Row: Decodable {
            var name: String
            var entries: Int
            var bytes: UInt64
        }

        var kinds: [Row]
        var recipes: [Row]
        var totalBytes: UInt64
    }

    /// A new cache holding only the Debian base of the small recipes, a symbolic link to the
    /// suite's (made there first when missing): every other entry is made afresh, without running
    /// mmdebstrap again. The base root does not depend on SOURCE_DATE_EPOCH, and one folder gives
    /// the same base disk bit for bit (a copy would list its files in another order).
    func cacheWithBase(_ dir: TempDir, _ name: String) throws -> String {
        let bases = "\(Self.cache)/bases"
        func debianBases() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: bases)) ?? []).filter {
                $0 != "scratch" && FileManager.default.fileExists(atPath: "\(bases)/\($0)/root/etc/debian_version")
            }
        }
        if debianBases().isEmpty {
            let r = try build(Self.tiny, output: dir.file("base-out"))
            try #require(r.status == 0, "building tiny to make its base: \(r.stderr.suffix(3000))")
        }
        let cache = try dir.sub(name)
        try FileManager.default.createDirectory(atPath: "\(cache)/bases", withIntermediateDirectories: true)
        for b in debianBases() { try FileManager.default.createSymbolicLink(atPath: "\(cache)/bases/\(b)", withDestinationPath: "\(bases)/\(b)") }
        return cache
    }

    /// Runs a host tool that must succeed.
    func runOK(_ name: String, package: String, _ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try HostTool.run(name, package: package, args)
        try #require(r.status == 0, "\(name) \(args.joined(separator: " ")): \(r.output)", sourceLocation: sourceLocation)
    }

    /// Two builds' VM disks hold the same: the same base link (`qemu-img compare`) and the same
    /// files of tiny. Not the whole disk: the kernel's ext4 writes mount times and random inode
    /// generations into what a step changes, so two builds that both run a step differ there
    /// (README, verify-repro).
    func expectSameDisks(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let chainA = try #require(try readReport(a).outputs.vmChain), chainB = try #require(try readReport(b).outputs.vmChain)
        try Qemu.imgOK("compare", "\(a)/\(chainA[0])", "\(b)/\(chainB[0])", sourceLocation: sourceLocation)
        let raws = [a, b].map { $0 + ".raw" }
        defer { for r in raws { unlink(r) } }
        for (out, raw) in zip([a, b], raws) { try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", raw) }
        for path in ["/opt/tiny/greeting.txt", "/opt/tiny/bin/hello", "/etc/imgbench-vm-only", "/etc/fstab"] {
            let x = try DiskFile.read(raws[0], path), y = try DiskFile.read(raws[1], path)
            #expect(x.content != nil && x.content == y.content && x.mode == y.mode, "\(path): \(x) and \(y)", sourceLocation: sourceLocation)
        }
    }

    /// `imgbench cache verify` finds every entry usable.
    func expectCacheVerifies(_ cache: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try imgbench("cache", "verify", "--cache", cache)
        #expect(r.status == 0, "cache verify \(cache): exit \(r.status): \(r.output)", sourceLocation: sourceLocation)
    }
}
