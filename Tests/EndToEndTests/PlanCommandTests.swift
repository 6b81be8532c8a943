import Foundation
import Testing
import TestSupport

/// Issue 14: `imgbench plan` shows a recipe's plan without running anything or needing the
/// context's files, and the build's command line reads as docker's does.
struct PlanCommandTests {
    let recipe = """
        ARG SUITE=bookworm
        FROM scratch AS final
        ARG SUITE
        # imgbench: target=vm
        COPY --chmod=0644 <<motd /etc/
        hello from $SUITE
        motd
        COPY app.conf missing.txt /srv/
        HEALTHCHECK --interval=30s CMD ["/bin/check"]
        """

    func folder(_ dir: TempDir) throws -> String {
        let folder = try dir.sub("demo")
        try recipe.write(toFile: "\(folder)/Containerfile", atomically: true, encoding: .utf8)
        try "x=1\n".write(toFile: "\(folder)/app.conf", atomically: true, encoding: .utf8)
        return folder
    }

    @Test func jsonShowsArgsStageAndStepsWithAMissingSourceNotFatal() throws {
        let dir = try TempDir("plan")
        defer { dir.cleanup() }
        let r = try imgbench("plan", try folder(dir), "--cache", dir.file("cache"), "--format", "json", "--build-arg", "SUITE=trixie")
        #expect(r.status == 0, "\(r.output)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let args = try #require(doc["args"] as? [[String: Any]])
        #expect(args.count == 1 && args[0]["instruction"] as? String == "ARG" && args[0]["line"] as? Int == 1)
        #expect(args[0]["value"] as? String == "trixie")
        let stage = try #require((doc["stages"] as? [[String: Any]])?.first)
        #expect(stage["name"] as? String == "final" && stage["from"] as? String == "scratch")
        let steps = try #require(stage["steps"] as? [[String: Any]])
        #expect(steps.map { $0["instruction"] as? String } == ["ARG", "COPY", "COPY", "HEALTHCHECK"])
        #expect(steps[1]["line"] as? Int == 5 && steps[1]["target"] as? String == "vm")
        #expect(steps[1]["arguments"] as? [String] == ["<<motd", "/etc/"] && steps[1]["heredocs"] as? [String] == ["motd"])
        #expect(steps[1]["flags"] as? [String: String] == ["chmod": "0644", "target": "vm"])
        let cache = try #require(steps[1]["cache"] as? [String: Any])
        #expect(cache["vm"] as? Bool == false && cache["container"] == nil, "a vm step: the container side does not build it")
        #expect(steps[2]["sources"] as? [String] == ["app.conf"])
        #expect((steps[2]["missing"] as? [String])?.first?.contains("missing.txt") == true)
        #expect(steps[3]["arguments"] as? [String] == ["CMD", "/bin/check"])
        #expect(Set(steps.compactMap { $0["key"] as? String }).count == 4)
    }

    @Test func tableNamesTheMissingSourceAtItsLine() throws {
        let dir = try TempDir("plan-table")
        defer { dir.cleanup() }
        let path = try folder(dir)
        let r = try imgbench("plan", path, "--cache", dir.file("cache"))
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("stage final FROM scratch"))
        #expect(r.stdout.contains("\(path)/Containerfile:8:1: source 'missing.txt' matches no file"), "\(r.stdout)")
    }

    @Test func aRefusedRecipeExitsTwoWithItsPlace() throws {
        let dir = try TempDir("plan-bad")
        defer { dir.cleanup() }
        let file = dir.file("Other.containerfile")
        try "FROM scratch\nRUN --mount=type=ssh true\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try imgbench("plan", dir.path, "-f", file)
        #expect(r.status == 2, "\(r.output)")
        #expect(r.stderr.contains("imgbench: error: \(file):2:5: RUN --mount=type=ssh is not supported"), "\(r.stderr)")
    }

    @Test func buildRefusesATargetStageTheRecipeDoesNotHave() throws {
        let dir = try TempDir("build-target")
        defer { dir.cleanup() }
        let r = try imgbench("build", try folder(dir), "--target", "builder", "--cache", dir.file("cache"), "--output", dir.file("out"))
        #expect(r.status == 2, "\(r.output)")
        #expect(r.stderr.contains("--target builder: the recipe has no stage of that name (its stages: final)"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
    }
}

/// Issue 14 end to end on a scratch base (no Debian root needed): here-documents, HEALTHCHECK,
/// ONBUILD and MAINTAINER reach the container image, named by `-t`.
@Suite(.enabled(if: isRoot, "needs root: a build mounts overlays"))
struct ContainerfileBuildTests {
    @Test func heredocFilesAndConfigReachTheImageNamedByTag() throws {
        let dir = try TempDir("heredoc-build")
        defer { dir.cleanup() }
        let folder = try dir.sub("scratchy")
        try """
            FROM scratch
            ARG WHO=world
            COPY --chmod=0640 <<hello.txt <<'raw.txt' /etc/demo/
            hello $WHO
            hello.txt
            raw $WHO
            raw.txt
            HEALTHCHECK --interval=1m --timeout=5s CMD ["/bin/check"]
            ONBUILD COPY . /app
            MAINTAINER me
            """.write(toFile: "\(folder)/Containerfile", atomically: true, encoding: .utf8)
        let out = dir.file("out")
        let r = try imgbench("build", folder, "-t", "demo/scratchy:v1", "--images", "container", "--cache", dir.file("cache"),
                             "--output", out, "--progress", "plain", "--format", "json")
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stderr.contains("==> [container 2/5] COPY --chmod=0640 <<hello.txt"), "plain progress lines: \(r.stderr)")
        let rootfs = "\(out)/bundle/rootfs/etc/demo"
        #expect(try String(contentsOfFile: "\(rootfs)/hello.txt", encoding: .utf8) == "hello world\n")
        #expect(try String(contentsOfFile: "\(rootfs)/raw.txt", encoding: .utf8) == "raw $WHO\n")
        #expect((try FileManager.default.attributesOfItem(atPath: "\(rootfs)/hello.txt")[.posixPermissions] as? Int) == 0o640)
        let index = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(out)/oci/index.json"))) as? [String: Any])
        let manifest = try #require((index["manifests"] as? [[String: Any]])?.first)
        #expect((manifest["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] == "demo/scratchy:v1")
        let config = try #require(try imageConfig(layout: "\(out)/oci", manifest: manifest)["config"] as? [String: Any])
        let health = try #require(config["Healthcheck"] as? [String: Any])
        #expect(health["Test"] as? [String] == ["CMD", "/bin/check"] && health["Interval"] as? Int == 60_000_000_000 && health["Timeout"] as? Int == 5_000_000_000)
        #expect(config["OnBuild"] as? [String] == ["COPY . /app"])
        #expect((config["Labels"] as? [String: String])?["maintainer"] == "me")
    }

    @Test func theOlderTargetSpellingStillChoosesTheImagesWithANote() throws {
        let dir = try TempDir("old-target")
        defer { dir.cleanup() }
        let folder = try dir.sub("old")
        try "FROM scratch\nLABEL a=b\n".write(toFile: "\(folder)/Containerfile", atomically: true, encoding: .utf8)
        let r = try imgbench("build", folder, "--target", "container", "--cache", dir.file("cache"), "--output", dir.file("out"),
                             "--progress", "quiet", "--format", "json")
        #expect(r.status == 0, "\(r.output)")
        #expect(r.errorLines == ["imgbench: note: --target container is deprecated for the images to build (--target names a stage, as in docker): use --images container"])
        #expect(FileManager.default.fileExists(atPath: dir.file("out") + "/oci/index.json") && !FileManager.default.fileExists(atPath: dir.file("out") + "/vm"))
    }

    func imageConfig(layout: String, manifest: [String: Any]) throws -> [String: Any] {
        func blob(_ digest: Any?) throws -> [String: Any] {
            let hex = try #require((digest as? String)?.split(separator: ":").last)
            return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(layout)/blobs/sha256/\(hex)"))) as? [String: Any])
        }
        return try blob((try blob(manifest["digest"])["config"] as? [String: Any])?["digest"])
    }

    /// `FROM STAGE`: the stage's steps are listed first, marked as inherited from the stage they
    /// are written in; an image only the local store could hold is a base problem, not fatal.
    @Test func aStageFromAStageListsTheInheritedStepsAndAMissingImageIsShown() throws {
        let dir = try TempDir("plan-stages")
        defer { dir.cleanup() }
        let folder = try dir.sub("stages")
        try "FROM scratch AS base\nCOPY a /a\nFROM base AS final\nCOPY --from=imgbench-plan-missing:v1 /x /x\nFROM imgbench-plan-missing:v1\n"
            .write(toFile: "\(folder)/Containerfile", atomically: true, encoding: .utf8)
        try "a\n".write(toFile: "\(folder)/a", atomically: true, encoding: .utf8)
        let r = try imgbench("plan", folder, "--cache", dir.file("cache"), "--format", "json", "--target", "final")
        #expect(r.status == 0, "\(r.output)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let stages = try #require(doc["stages"] as? [[String: Any]])
        #expect(stages[1]["from"] as? String == "base" && (stages[1]["base"] as? String)?.hasPrefix("stage base, on scratch") == true)
        #expect(stages[0]["built"] as? Bool == true, "the stage final is built FROM")
        let steps = try #require(stages[1]["steps"] as? [[String: Any]])
        #expect(steps.map { $0["inherited"] as? Bool } == [true, false] && steps.map { $0["stage"] as? Int } == [0, 1])
        let baseSteps = try #require(stages[0]["steps"] as? [[String: Any]])
        #expect(steps[0]["key"] as? String == baseSteps[0]["key"] as? String)
        #expect((stages[2]["baseProblem"] as? String)?.contains("no image imgbench-plan-missing:v1 in the local image store") == true, "\(stages[2])")
    }

    /// verify-repro reads --target as the stage and --images as the images, as build does.
    @Test func verifyReproReadsTargetAsAStageAndImagesAsTheImages() throws {
        let dir = try TempDir("repro-target")
        defer { dir.cleanup() }
        let path = try dir.sub("demo")
        try "FROM scratch AS final\nRUN true\n".write(toFile: "\(path)/Containerfile", atomically: true, encoding: .utf8)
        let r = try imgbench("verify-repro", path, "--target", "builder", "--cache", dir.file("cache"), "--output", dir.file("out"))
        #expect(r.status == 2 && r.stderr.contains("--target builder: the recipe has no stage of that name (its stages: final)"), "\(r.output)")
        let both = try imgbench("verify-repro", path, "--target", "vm", "--images", "container", "--cache", dir.file("cache"), "--output", dir.file("out"))
        #expect(both.status != 0 && both.stderr.contains("give the images with --images only"), "\(both.output)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
    }
}
