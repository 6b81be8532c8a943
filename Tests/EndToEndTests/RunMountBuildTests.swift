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
        // A cache of its own: --no-cache remakes the base disk, which the suite's cache shares.
        let cache = try cacheWithBase(dir, "cache")
        let first = try build(recipe, output: dir.file("first"), cache: cache)
        #expect(first.status == 0, "\(first.output)")
        let again = try build(recipe, output: dir.file("again"), cache: cache, arguments: ["--no-cache"])
        #expect(again.status == 0, "\(again.output)")
        // Each build runs the step on both sides, on the same cache, one side after the other
        // (sharing=locked); the sides run at the same time, so either may come first.
        let root = dir.file("again") + "/bundle/rootfs"
        let containerSaw = try String(contentsOfFile: "\(root)/seen.txt", encoding: .utf8)
        #expect(!FileManager.default.fileExists(atPath: "\(root)/var/cache/demo/runs"), "the cache mount's content is in the image")
        #expect(!FileManager.default.fileExists(atPath: "\(root)/scratch/file"), "the tmpfs mount's content is in the image")
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", dir.file("again") + "/vm/disk.qcow2", raw)
        let vmSaw = try DiskFile.read(raw, "/seen.txt").content.map { String(decoding: $0, as: UTF8.self) }
        #expect(Set([containerSaw, vmSaw ?? ""]) == ["3\n", "4\n"], "the third and fourth runs: container \(containerSaw), vm \(vmSaw ?? "none")")
        #expect(try DiskFile.read(raw, "/var/cache/demo/runs").content == nil, "the cache mount's content is on the disk")
        #expect(try DiskFile.read(raw, "/scratch/file").content == nil, "the tmpfs mount's content is on the disk")
        #expect(try DiskFile.read(raw, "/scratch").content == nil, "the mount point made for the step is left on the disk")
    }
}

extension BuildTests {
    /// A program made in a builder stage (with a cache mount) and copied into the final stage:
    /// both images hold the final stage's files only, a stage the target does not need is not
    /// built, a rebuild is all cache hits, and `--target` builds another stage.
    @Test func aMultiStageRecipeGivesBothImagesTheFinalStageOnly() throws {
        let dir = try TempDir("multi-stage")
        defer { dir.cleanup() }
        let recipe = try writeRecipe(dir, "stages", """
            # vm-size=1G
            # vm-kernel=host
            FROM debian:bookworm AS build
            RUN --mount=type=cache,target=/cache <<EOF
            set -e
            mkdir -p /out
            printf '#!/bin/sh\\necho built in a stage\\n' > /out/app
            chmod 755 /out/app
            echo junk > /build-only.txt
            EOF
            FROM debian:bookworm AS unused
            RUN false
            FROM debian:bookworm
            COPY --from=build /out/app /usr/local/bin/app
            RUN /usr/local/bin/app > /seen.txt
            """)
        let out = dir.file("out")
        let r = try build(recipe, output: out)
        #expect(r.status == 0, "\(r.output)")
        let root = "\(out)/bundle/rootfs"
        #expect(try String(contentsOfFile: "\(root)/seen.txt", encoding: .utf8) == "built in a stage\n")
        #expect(!FileManager.default.fileExists(atPath: "\(root)/build-only.txt") && !FileManager.default.fileExists(atPath: "\(root)/out"))
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", raw)
        #expect(try DiskFile.read(raw, "/seen.txt").content == Data("built in a stage\n".utf8))
        #expect(try DiskFile.read(raw, "/usr/local/bin/app").mode == "755")
        #expect(try DiskFile.read(raw, "/build-only.txt").content == nil && DiskFile.read(raw, "/out/app").content == nil)
        // The report has the builder stage's step, marked with its stage, on the container side only.
        let first = try readReport(out)
        let stageSteps = try #require(first.stageSteps)
        #expect(stageSteps.map(\.stage) == ["build"] && stageSteps[0].instruction.hasPrefix("RUN --mount=type=cache"))
        #expect(stageSteps[0].container != nil && stageSteps[0].vm == nil)
        #expect(first.steps.allSatisfy { $0.stage == "2" }, "the target stage has no name: its number")
        let again = try build(recipe, output: dir.file("again"), arguments: ["--format", "json"])
        #expect(again.status == 0, "\(again.output)")
        let report = try JSONDecoder().decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: dir.file("again") + "/report.json")))
        #expect(report.steps.allSatisfy { ($0.container?.cacheHit ?? true) && ($0.vm?.cacheHit ?? true) }, "a rebuild is all cache hits")
        let stage = try build(recipe, output: dir.file("stage"), arguments: ["--target", "build", "--images", "container"])
        #expect(stage.status == 0, "\(stage.output)")
        #expect(FileManager.default.fileExists(atPath: dir.file("stage") + "/bundle/rootfs/build-only.txt"))
    }
}

extension BuildTests {
    /// `RUN --mount=type=secret` with `--secret id=ID,src=FILE`: the step reads the file, and no
    /// layer, bundle, report or disk block holds it; a required secret not given stops the build.
    @Test func aSecretIsThereForItsStepAndInNoOutput() throws {
        let dir = try TempDir("secret")
        defer { dir.cleanup() }
        let secret = "imgbench-secret-\(UUID().uuidString)"
        try secret.write(toFile: dir.file("token"), atomically: true, encoding: .utf8)
        let recipe = try writeRecipe(dir, "secret", """
            # vm-size=1G
            # vm-kernel=host
            FROM debian:bookworm
            RUN --mount=type=secret,id=tok,required=true wc -c < /run/secrets/tok > /tok.len
            RUN echo after > /after.txt
            """)
        let out = dir.file("out")
        // A cache of its own: --no-cache (below) remakes the base disk, which the suite's cache shares.
        let cache = try cacheWithBase(dir, "cache")
        // With --cache-to, every entry but the secret step's goes to the registry.
        let registry = LocalRegistry.isAvailable ? try LocalRegistry() : nil
        let cacheTo = registry.map { ["--cache-to", "\($0.address)/imgbench/secret-cache"] } ?? []
        let r = try build(recipe, output: out, cache: cache, arguments: ["--secret", "id=tok,src=\(dir.file("token"))"] + cacheTo)
        #expect(r.status == 0, "\(r.output)")
        if let registry { try expectNotStored(secretStep: 1, of: try readReport(out), in: "\(registry.address)/imgbench/secret-cache") }
        #expect(try String(contentsOfFile: "\(out)/bundle/rootfs/tok.len", encoding: .utf8) == "\(secret.utf8.count)\n")
        #expect(!FileManager.default.fileExists(atPath: "\(out)/bundle/rootfs/run/secrets/tok"))
        try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", dir.file("disk.raw"))
        // Every output, the layers uncompressed and the disk's blocks, searched for the secret.
        let search = try runProcess("/bin/sh", ["-c", "{ for f in \"$1\"/oci/blobs/sha256/*; do zcat -f \"$f\"; done; cat \"$1\"/*.json; find \"$1\"/bundle -type f -exec cat {} +; tr '\\0' '\\n' < \"$2\"; } | grep -acF \"$3\"",
                                                "search", out, dir.file("disk.raw"), secret])
        #expect(search.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the secret is in an output: \(search.output)")
        let missing = try build(recipe, output: dir.file("missing"), cache: cache, arguments: ["--no-cache"])
        #expect(missing.status == 1 && missing.stderr.contains("the secret 'tok' is required"), "\(missing.output)")
    }

    /// The registry of `--cache-to` has the entries of every step of the report but the one that
    /// mounted a secret (step `secretStep`), on neither side.
    func expectNotStored(secretStep: Int, of report: Report, in repository: String) throws {
        let r = try HostTool.run("skopeo", package: "skopeo", ["list-tags", "--tls-verify=false", "docker://\(repository)"])
        #expect(r.status == 0, "skopeo list-tags: \(r.output)")
        for step in report.steps where step.container != nil || step.vm != nil {
            let tags = ["\"layer-\(step.key)\"", "-\(step.key)\""].map { r.stdout.contains($0) }
            if step.index == secretStep {
                #expect(tags == [false, false], "the step that mounted a secret is in the registry: \(r.stdout)")
            } else {
                #expect(tags == [true, true], "step \(step.index) is not in the registry: \(r.stdout)")
            }
        }
    }
}

extension BuildTests {
    /// `RUN --mount=type=bind`: a folder of the context, and a stage's files, read by the step
    /// on both sides and in neither image.
    @Test func bindMountsOfTheContextAndOfAStageAreReadAndNotKept() throws {
        let dir = try TempDir("bind-mount")
        defer { dir.cleanup() }
        let recipe = try writeRecipe(dir, "bind", """
            # vm-size=1G
            # vm-kernel=host
            FROM debian:bookworm AS build
            RUN mkdir /out && echo from-stage > /out/v
            FROM debian:bookworm
            RUN --mount=type=bind,source=data,target=/data --mount=type=bind,from=build,source=/out,target=/mnt \\
                cat /data/v /mnt/v > /seen.txt
            """)
        try FileManager.default.createDirectory(atPath: "\(recipe)/data", withIntermediateDirectories: true)
        try "from-context\n".write(toFile: "\(recipe)/data/v", atomically: true, encoding: .utf8)
        let out = dir.file("out")
        let r = try build(recipe, output: out)
        #expect(r.status == 0, "\(r.output)")
        #expect(try String(contentsOfFile: "\(out)/bundle/rootfs/seen.txt", encoding: .utf8) == "from-context\nfrom-stage\n")
        #expect(!FileManager.default.fileExists(atPath: "\(out)/bundle/rootfs/data") && !FileManager.default.fileExists(atPath: "\(out)/bundle/rootfs/mnt/v"))
        try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", dir.file("disk.raw"))
        #expect(try DiskFile.read(dir.file("disk.raw"), "/seen.txt").content == Data("from-context\nfrom-stage\n".utf8))
        #expect(try DiskFile.read(dir.file("disk.raw"), "/data/v").content == nil)
    }
}
