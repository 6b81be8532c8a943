import Foundation
import Host
@testable import RecipePlan
import Testing

// Issue 14: Containerfiles as people write them today, read as BuildKit reads them.

private func parse(_ text: String, args: [String: String] = [:]) throws -> Recipe {
    try RecipeParser(file: "recipes/demo/Containerfile", buildArgs: args).parse(text)
}

/// The recipe is refused at `line`:`column` with a message that says `message`.
private func expectRefused(_ text: String, at line: Int, _ column: Int, saying message: String,
                           sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
    do {
        _ = try parse(text)
        Issue.record("accepted: \(text)", sourceLocation: sourceLocation)
    } catch let e as RecipeError {
        #expect(e.location == RecipePlan.SourceLocation(file: "recipes/demo/Containerfile", line: line, column: column), "\(e)", sourceLocation: sourceLocation)
        #expect(e.message.contains(message), "\(e)", sourceLocation: sourceLocation)
    }
}

@Suite struct HeredocTests {
    @Test func aRunOfOneDocumentRunsItsContent() throws {
        let r = try parse("FROM scratch\nRUN <<EOF\n# a comment is content\nFROM is content too\necho \"$HOME\"\nEOF\nRUN true\n")
        #expect(r.steps.count == 2)
        #expect(r.steps[0].instruction == .run(.shell("# a comment is content\nFROM is content too\necho \"$HOME\"\n")))
        #expect(r.steps[0].heredocs == [Heredoc(name: "EOF", content: "# a comment is content\nFROM is content too\necho \"$HOME\"\n", expand: true, chomp: false)])
        #expect(r.steps[1].instruction == .run(.shell("true")))
        #expect(r.steps[1].location.line == 7)
    }

    @Test func severalDocumentsOnALineGoToTheShellWithTheirDelimiters() throws {
        let r = try parse("FROM scratch\nRUN cat <<A > /a && cat <<-'B' > /b\none $X\nA\n\ttwo\n\tB\n")
        #expect(r.steps[0].instruction == .run(.shell("cat <<A > /a && cat <<-'B' > /b\none $X\nA\ntwo\nB")))
        #expect(r.steps[0].heredocs.map(\.name) == ["A", "B"])
        #expect(r.steps[0].heredocs.map(\.expand) == [true, false])
        #expect(r.steps[0].heredocs[1].chomp)
    }

    @Test func dashStripsLeadingTabsOfLinesAndDelimiter() throws {
        let r = try parse("FROM scratch\nRUN <<-EOF\n\t\techo hi\n  \tspaces stay\n\tEOF\n")
        #expect(r.steps[0].instruction == .run(.shell("echo hi\n  \tspaces stay\n")))
    }

    @Test func aShebangDocumentRunsWithItsInterpreter() throws {
        let r = try parse("FROM scratch\nRUN <<EOF\n#!/usr/bin/env python3\nprint('IMGBENCH_HEREDOC')\nEOF\n")
        guard case let .run(.shell(script)) = r.steps[0].instruction else { Issue.record("not a shell RUN"); return }
        #expect(script.hasPrefix("cat > '/dev/shm/imgbench-heredoc-EOF' <<'IMGBENCH_HEREDOC'\n#!/usr/bin/env python3\n"))
        #expect(script.hasSuffix("exec '/usr/bin/env' 'python3' '/dev/shm/imgbench-heredoc-EOF'\n"))
    }

    @Test func copyWritesFilesNamedByTheDelimiters() throws {
        let r = try parse("FROM scratch\nARG V=1.2\nCOPY <<robots.txt <<\"raw.txt\" /usr/share/html/\nversion $V \\$V ${V}\nrobots.txt\nkeep $V\nraw.txt\nCOPY --chmod=0755 <<EOF /run.sh\n#!/bin/sh\nEOF\n")
        #expect(r.steps[1].instruction == .copy(sources: [], destination: "/usr/share/html/", chown: nil, chmod: nil))
        #expect(r.steps[1].inlineFiles == [InlineFile(name: "robots.txt", content: "version 1.2 \\$V 1.2\n"), InlineFile(name: "raw.txt", content: "keep $V\n")])
        #expect(r.steps[2].instruction == .copy(sources: [], destination: "/run.sh", chown: nil, chmod: "0755"))
        #expect(r.steps[2].inlineFiles == [InlineFile(name: "EOF", content: "#!/bin/sh\n")])
    }

    @Test func contextSourcesAndDocumentsMix() throws {
        let r = try parse("FROM scratch\nADD app.tar <<conf /srv/\nx=1\nconf\n")
        #expect(r.steps[0].instruction == .add(sources: ["app.tar"], destination: "/srv/", chown: nil, chmod: nil))
        #expect(r.steps[0].inlineFiles.map(\.name) == ["conf"])
    }

    @Test func theExecFormAndQuotedWordsHoldNoDocument() throws {
        let r = try parse("FROM scratch\nRUN [\"echo\", \"<<EOF\"]\nRUN echo \"<<EOF\"\n")
        #expect(r.steps.count == 2)
        #expect(r.steps.allSatisfy { $0.heredocs.isEmpty })
    }
}

@Suite struct LinesAndDirectivesTests {
    @Test func emptyLinesAndCommentsInsideAContinuationAreSkipped() throws {
        let r = try parse("FROM scratch\nRUN echo a \\\n\n  # a comment\n  b\nRUN c\n")
        #expect(r.steps.map(\.instruction) == [.run(.shell("echo a   b")), .run(.shell("c"))])
    }

    @Test func anEscapedEscapeEndsTheLine() throws {
        let r = try parse("FROM scratch\nRUN echo a\\\\\nRUN echo b \\\n")
        #expect(r.steps.map(\.instruction) == [.run(.shell("echo a\\\\")), .run(.shell("echo b"))])
    }

    @Test func aByteOrderMarkIsNotPartOfTheFirstLine() throws {
        let r = try parse("\u{FEFF}# vm-size=2G\nFROM scratch\n")
        #expect(r.vm.size == 2 << 30)
    }

    @Test func escapeDirectiveWithBlanksAroundTheEquals() throws {
        let r = try parse("# syntax=docker/dockerfile:1\n# escape = `\nFROM scratch\nRUN echo a `\n  b \\n\n")
        #expect(r.steps.map(\.instruction) == [.run(.shell("echo a   b \\n"))])
    }

    @Test func anotherToolsDirectiveEndsTheDirectives() throws {
        let r = try parse("# foo=bar\n# escape=`\nFROM scratch\nRUN echo `\n")
        #expect(r.steps.map(\.instruction) == [.run(.shell("echo `"))])
    }

    @Test func argBeforeFromIsExpandedInFrom() throws {
        let text = "ARG SUITE=bookworm\nARG VARIANT\nFROM debian:${SUITE}\nARG SUITE\nRUN echo $SUITE\n"
        #expect(try parse(text).base == .debian(suite: "bookworm", variant: "minbase"))
        let r = try parse(text, args: ["SUITE": "trixie"])
        #expect(r.base == .debian(suite: "trixie", variant: "minbase"))
        #expect(r.steps[0].instruction == .arg(name: "SUITE", value: "trixie"))
    }

    @Test func theHostsPlatformIsAccepted() throws {
        for p in ["linux/amd64", "$BUILDPLATFORM", "${TARGETPLATFORM}", "linux/x86_64"] {
            #expect(try parse("FROM --platform=\(p) debian:bookworm AS build\n").base == .debian(suite: "bookworm", variant: "minbase"))
        }
        let r = try parse("FROM scratch\nARG TARGETARCH\nRUN echo $TARGETARCH\n")
        #expect(r.steps[0].instruction == .arg(name: "TARGETARCH", value: "amd64"))
    }

    @Test func anotherPlatformIsRefusedAtItsFlag() throws {
        try expectRefused("ARG P=linux/arm64\nFROM  --platform=$P debian:bookworm\n", at: 2, 7,
                          saying: "--platform=linux/arm64: only the host's platform, linux/amd64, can be built here")
    }
}

@Suite struct ConfigInstructionTests {
    @Test func healthcheckAsDockerWritesIt() throws {
        let r = try parse("""
            FROM scratch
            HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1
            HEALTHCHECK CMD ["/bin/check", "--quick"]
            healthcheck none
            """)
        var shell = HealthCheck(test: ["CMD-SHELL", "curl -f http://localhost/ || exit 1"])
        (shell.interval, shell.timeout, shell.startPeriod, shell.startInterval, shell.retries) = (30_000_000_000, 3_000_000_000, 90_000_000_000, 500_000_000, 3)
        #expect(r.steps.map(\.instruction) == [.healthcheck(shell), .healthcheck(HealthCheck(test: ["CMD", "/bin/check", "--quick"])),
                                                .healthcheck(HealthCheck(test: ["NONE"]))])
    }

    @Test func onbuildTriggersAreRecordedAsWritten() throws {
        let r = try parse("FROM scratch\nONBUILD COPY . /app\nonbuild run make -C /app\n")
        #expect(r.steps.map(\.instruction) == [.onBuild("COPY . /app"), .onBuild("run make -C /app")])
        #expect(!r.steps[0].instruction.changesFiles)
    }

    @Test func maintainerIsTheMaintainerLabel() throws {
        let r = try parse("FROM scratch\nMAINTAINER Jane Doe <jane@example.org>\n")
        #expect(r.steps[0].instruction == .label([KeyValue("maintainer", "Jane Doe <jane@example.org>")]))
    }

    @Test func copyAndAddFlags() throws {
        let r = try parse("FROM scratch\nCOPY --chown=app:app --chmod=0640 --link a /a\nADD --chmod=755 --chown=1:1 b.tar /b/\nCOPY --link=false c /c\n")
        #expect(r.steps[0].instruction == .copy(sources: ["a"], destination: "/a", chown: "app:app", chmod: "0640"))
        #expect(r.steps[0].flags == ["chown": "app:app", "chmod": "0640", "link": "true"])
        #expect(r.steps[1].instruction == .add(sources: ["b.tar"], destination: "/b/", chown: "1:1", chmod: "755"))
        #expect(r.steps[2].flags == ["link": "false"])
    }
}

@Suite struct StepNoteTests {
    @Test func aNoteOnTheLineBeforeSetsTheStepsTarget() throws {
        let r = try parse("""
            FROM scratch
            # imgbench: target=vm
            # another comment between
            RUN apt-get install -y linux-image-amd64
            # imgbench: target=container network=none
            RUN echo container only
            RUN --target=vm echo the old spelling
            # imgbench: target=vm

            RUN echo a blank line ends the note
            """)
        #expect(r.steps.map(\.target) == [.vm, .container, .vm, .both])
        #expect(r.steps[0].flags == ["target": "vm"])
        #expect(r.steps[1].network == .none)
    }
}

@Suite struct RunMountTests {
    @Test func cacheAndTmpfsMountsAreRead() throws {
        let r = try parse("""
            FROM scratch
            WORKDIR /src
            RUN --mount=type=cache,target=/root/.cache,id=go,sharing=locked,uid=1000,gid=1000,mode=0700,ro \\
                --mount=type=tmpfs,dst=build,size=64M --mount=target=/x,type=cache make
            """)
        var cache = RunMount(kind: .cache, target: "/root/.cache", id: "go")
        (cache.locked, cache.uid, cache.gid, cache.mode, cache.readOnly) = (true, 1000, 1000, 0o700, true)
        var tmpfs = RunMount(kind: .tmpfs, target: "/src/build", id: "/src/build")
        tmpfs.size = 64 << 20
        #expect(r.steps[1].mounts == [cache, tmpfs, RunMount(kind: .cache, target: "/x", id: "/x")])
        #expect(r.steps[1].instruction == .run(.shell("make")))
    }

    @Test func bindMountsReadTheContextOrAStage() throws {
        let r = try parse("FROM scratch AS b\nFROM scratch\nWORKDIR /w\nRUN --mount=target=ctx --mount=type=bind,from=b,source=out/,target=/o,ro make\n")
        var fromStage = RunMount(kind: .bind, target: "/o", id: "/o")
        (fromStage.source, fromStage.from) = ("/out", 0)
        #expect(r.steps[1].mounts == [RunMount(kind: .bind, target: "/w/ctx", id: "/w/ctx"), fromStage])
        #expect(r.neededStages == [0], "a stage a bind mount reads is built")
    }

    @Test func aBoundContextFileIsPartOfTheKey() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("c14-bind-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: "\(dir)/data", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let recipe = try RecipeParser(file: "\(dir)/Containerfile").parse("FROM scratch\nRUN --mount=source=data,target=/d true\n")
        func key() throws -> String { try BuildPlan.make(recipe, baseKey: "b").steps[0].key }
        try "1".write(toFile: "\(dir)/data/x", atomically: true, encoding: .utf8)
        let first = try key()
        try "2".write(toFile: "\(dir)/data/x", atomically: true, encoding: .utf8)
        #expect(try key() != first)
        #expect(try BuildPlan.make(recipe, baseKey: "b").steps[0].sources == ["data"])
    }

    @Test func secretMountsAreReadOnlyFilesByID() throws {
        let r = try parse("FROM scratch\nRUN --mount=type=secret,id=npmrc --mount=type=secret,target=/etc/tok,required=true true\n")
        var tok = RunMount(kind: .secret, target: "/etc/tok", id: "tok")
        tok.required = true
        #expect(r.steps[0].mounts == [RunMount(kind: .secret, target: "/run/secrets/npmrc", id: "npmrc"), tok])
    }
}

@Suite struct MultiStageTests {
    let text = """
        ARG SUITE=bookworm
        FROM debian:${SUITE} AS Build
        ENV CC=gcc
        WORKDIR /src
        RUN make
        FROM scratch AS unused
        COPY --from=build /src/junk /junk
        FROM debian:${SUITE} AS tools
        COPY --from=0 /src/app /app
        FROM scratch
        COPY --from=tools /app /usr/bin/app
        RUN echo $CC
        """

    @Test func everyStageIsParsedAndTheLastIsBuilt() throws {
        let r = try parse(text)
        #expect(r.stages.map(\.stageName) == ["Build", "unused", "tools", nil])
        #expect(r.stageIndex == 3 && r.base == .scratch && r.baseLocation.line == 10)
        #expect(r.steps[0].copyFrom == 2 && r.stages[2].steps[0].copyFrom == 0 && r.stages[1].steps[0].copyFrom == 0)
        #expect(r.neededStages == [0, 2], "the unused stage is not needed")
        // A stage starts afresh: no ENV or WORKDIR of the one before.
        #expect(r.steps[1].environment.isEmpty)
        #expect(r.stages[0].steps[1].instruction == .workdir("/src"))
        #expect(r.stages[2].steps[0].instruction == .copy(sources: ["/src/app"], destination: "/app", chown: nil, chmod: nil))
    }

    /// `FROM STAGE` (by name, any case, or number): the stage's base and steps come first, and its
    /// ENV, WORKDIR and SHELL are in force; ARGs are not.
    @Test func aStageBuiltFromAnotherContinuesItsStepsAndConfig() throws {
        let r = try parse("""
            FROM debian:bookworm AS base
            ARG LOCAL=1
            ENV GREETING=hi
            WORKDIR /app
            RUN echo one
            FROM BASE AS test
            RUN echo $GREETING
            FROM 1
            COPY x y
            """)
        let test = r.stages[1]
        #expect(test.parentStage == 0 && test.inheritedSteps == 4 && test.base == .debian(suite: "bookworm", variant: "minbase"))
        #expect(test.steps.count == 5 && test.ownSteps.map(\.text) == ["RUN echo $GREETING"])
        #expect(test.steps[4].environment == [KeyValue("GREETING", "hi")] && test.steps[4].buildArgs.isEmpty)
        #expect(test.steps[4].stage == 1 && test.steps[0].stage == 0 && test.baseReference == "debian:bookworm")
        #expect(r.parentStage == 1 && r.inheritedSteps == 5 && r.steps.count == 6)
        #expect(r.steps[5].instruction == .copy(sources: ["x"], destination: "/app/y", chown: nil, chmod: nil), "WORKDIR is the stage's")
        #expect(r.neededStages.isEmpty, "a stage built FROM is the target's first steps, not a stage built apart")
    }

    /// `COPY --from=NAME` where no earlier stage is NAME: an image, as docker reads it.
    @Test func copyFromANameNoStageHasIsAnImage() throws {
        let r = try parse("FROM scratch AS a\nFROM scratch\nCOPY --from=a /x /x\nCOPY --from=myapp:1.0 /bin/app /app\nCOPY --from=debian:bookworm-slim /etc/os-release /\n")
        #expect(r.steps[0].copyFrom == 0 && r.steps[0].copyFromImage == nil)
        #expect(r.steps[1].copyFrom == nil && r.steps[1].copyFromImage == ImageSource(reference: "myapp:1.0", base: .local("myapp:1.0")))
        #expect(r.steps[2].copyFromImage?.base == .debian(suite: "bookworm", variant: "minbase", slim: true))
        #expect(r.neededStages == [0])
    }

    @Test func namesOfTheLocalStore() throws {
        #expect(try parse("FROM myapp\n").base == .local("myapp:latest"))
        #expect(try parse("FROM team/app:v1.2\n").base == .local("team/app:v1.2"))
        #expect(try parse("# base-variant=apt\nFROM debian:trixie-slim\n").base == .debian(suite: "trixie", variant: "apt", slim: true))
        #expect(RecipeParser.storeName("app") == "app:latest" && RecipeParser.storeName("localhost:5000/app") == "localhost:5000/app:latest")
        #expect(RecipeParser.storeName("app:1") == "app:1")
        for bad in ["App", "app:", "app:-x", "/app", "app//x"] { #expect(!RecipeParser.isLocalName(bad), "\(bad)") }
    }

    @Test func aStageIsChosenByNameOrNumber() throws {
        let r = try parse(text)
        let tools = try #require(r.stage(named: "TOOLS"))
        #expect(tools.stageIndex == 2 && tools.neededStages == [0] && tools.stageName == "tools")
        #expect(r.stage(named: "1")?.stageName == "unused")
        #expect(r.stage(named: "nope") == nil && r.stage(named: "4") == nil)
    }
}

/// Everything these suites refuse, each at its file:line:column.
@Test(arguments: [
    ("FROM scratch\nRUN true\nRUN <<EOF\necho\n", 3, 5, "unterminated here-document"),
    ("FROM scratch\nRUN echo <<'EOF\nx\nEOF\n", 2, 10, "unterminated quote"),
    ("FROM scratch\nCOPY <<a <<b\nA\na\nB\nb\n", 2, 1, "destination"),
    ("FROM scratch\nCOPY <<. /x\n1\n.\n", 2, 1, "cannot name a file"),
    ("FROM scratch\nHEALTHCHECK --interval=10 CMD true\n", 2, 1, "is not a duration"),
    ("FROM scratch\nHEALTHCHECK --timeout=500us CMD true\n", 2, 1, "at least 1ms"),
    ("FROM scratch\nHEALTHCHECK --retries=-1 CMD true\n", 2, 1, "--retries=-1"),
    ("FROM scratch\nHEALTHCHECK NONE true\n", 2, 1, "NONE takes no arguments"),
    ("FROM scratch\nHEALTHCHECK CMD\n", 2, 1, "needs a command"),
    ("FROM scratch\nHEALTHCHECK RUN true\n", 2, 13, "unknown HEALTHCHECK type 'RUN'"),
    ("FROM scratch\nONBUILD ONBUILD RUN x\n", 2, 9, "not allowed as an ONBUILD trigger"),
    ("FROM scratch\nONBUILD FROM x\n", 2, 9, "not allowed as an ONBUILD trigger"),
    ("FROM scratch\nONBUILD FROB x\n", 2, 9, "unknown instruction 'FROB'"),
    ("FROM scratch\nRUN --link true\n", 2, 5, "does not take --link"),
    ("FROM scratch\nCOPY --link=yes a /a\n", 2, 1, "--link must be true or false"),
    ("FROM --chown=1 scratch\n", 1, 6, "FROM does not take '--chown=1'"),
    ("FROM -- scratch\n", 1, 6, "FROM does not take '--'"),
    ("FROM --platform= scratch\n", 1, 6, "--platform needs a value"),
    ("FROM scratch\n# imgbench: target=vm\nENV A=1\n", 2, 13, "not ENV"),
    ("FROM scratch\n# imgbench: network=none\nCOPY a /a\n", 2, 13, "not COPY"),
    ("FROM scratch\n# imgbench: target=vm\nRUN --target=container x\n", 2, 13, "given both"),
    ("FROM scratch\n#imgbench: size=4G\nRUN x\n", 2, 12, "not an imgbench step setting"),
    ("FROM scratch\n# imgbench: target=box\nRUN x\n", 2, 13, "--target must be container, vm or both"),
    ("FROM scratch\n# imgbench:\nRUN x\n", 2, 3, "needs a setting"),
    ("FROM scratch\nRUN --mount=type=ssh true\n", 2, 5, "type=ssh is not supported"),
    ("FROM scratch\nRUN --mount=target=/x,rw true\n", 2, 5, "type=bind,rw is not supported"),
    ("FROM scratch\nRUN --mount=target=/x,source=../up true\n", 2, 5, "climbs out"),
    ("FROM scratch AS a\nRUN --mount=target=/x,from=a true\n", 2, 5, "RUN --mount from=a: that is this stage"),
    ("FROM scratch\nRUN --mount=type=secret true\n", 2, 5, "type=secret needs id=ID"),
    ("FROM scratch\nRUN true\nRUN --network=none --mount=type=cache true\n", 3, 20, "needs target=PATH"),
    ("FROM scratch\nRUN --mount=type=cache,target=/x,sharing=private true\n", 2, 5, "sharing=private"),
    ("FROM scratch\nRUN --mount=type=cache,target=/x,from=builder true\n", 2, 5, "type=cache does not take 'from'"),
    ("FROM scratch\nRUN --mount=type=tmpfs,target=/x,size=lots true\n", 2, 5, "size=lots is not a size"),
    ("FROM scratch\nRUN --mount=type=cache,target=/ true\n", 2, 5, "cannot mount on /"),
    ("FROM scratch\nCOPY --mount=type=cache,target=/x a /a\n", 2, 6, "does not take --mount"),
    ("FROM scratch AS a\nFROM scratch AS A\n", 2, 1, "a stage named 'A' comes earlier"),
    ("FROM scratch AS 1st\n", 1, 1, "'1st' is not a stage name"),
    ("FROM scratch AS a\nFROM a AS a\n", 2, 1, "a stage named 'a' comes earlier"),
    ("FROM scratch AS a\nCOPY --from=a /x /x\n", 2, 6, "COPY --from=a: that is this stage"),
    ("FROM scratch\nFROM scratch\nCOPY --from=1 /x /x\n", 3, 6, "COPY --from=1: no earlier stage has that number"),
    ("FROM scratch\nCOPY --from=Bad:Name /x /x\n", 2, 6, "unsupported base 'Bad:Name'"),
    ("FROM scratch\nRUN --mount=target=/x,from=debian:bookworm true\n", 2, 5, "an image is not supported here"),
    ("FROM scratch AS a\nFROM scratch\nADD --from=a /x /x\n", 3, 5, "ADD does not take --from"),
    ("FROM scratch AS a\nFROM scratch\nCOPY --from=a <<EOF /x\nhi\nEOF\n", 3, 6, "COPY --from takes no here-document"),
])
func containerfileRefusals(text: String, line: Int, column: Int, message: String) throws {
    try expectRefused(text, at: line, column, saying: message)
}

/// ONBUILD triggers of a base image (`RecipeParser.triggers`, read from its config by the
/// build) run right after the stage's FROM, as docker runs them, and are refused at the FROM.
@Suite struct OnBuildTriggerTests {
    @Test func triggersAreTheFirstStepsOfTheirStage() throws {
        var parser = RecipeParser(file: "recipes/demo/Containerfile")
        parser.triggers = [1: ["ENV FROM_TRIGGER=1", "RUN echo $FROM_TRIGGER > /t"]]
        let r = try parser.parse("FROM scratch AS a\nRUN a\nFROM app:v1\nRUN b\n")
        #expect(r.stages[0].steps.map(\.text) == ["RUN a"])
        #expect(r.steps.map(\.text) == ["ENV FROM_TRIGGER=1", "RUN echo $FROM_TRIGGER > /t", "RUN b"])
        #expect(r.steps[0].location.line == 3 && r.steps[2].environment == [KeyValue("FROM_TRIGGER", "1")])
    }

    @Test func aTriggerThatIsNotAnInstructionIsRefusedAtTheFrom() throws {
        var parser = RecipeParser(file: "recipes/demo/Containerfile")
        parser.triggers = [0: ["FROM x"]]
        #expect(throws: RecipeError.self) { try parser.parse("RUN x\n") }
        do {
            _ = try parser.parse("ARG A\nFROM app:v1\nRUN b\n")
            Issue.record("accepted")
        } catch let e as RecipeError {
            #expect(e.location.line == 2 && e.message.contains("the ONBUILD trigger 'FROM x' of app:v1"), "\(e)")
        }
    }
}

/// A stage built FROM another keeps that stage's keys for the steps it inherits.
@Test func aStageBuiltFromAnotherSharesItsKeys() throws {
    let r = try parse("FROM debian:bookworm AS base\nRUN one\nRUN two\nFROM base\nRUN three\n")
    let base = try BuildPlan.make(r.stages[0], baseKey: "k")
    let child = try BuildPlan.make(r, baseKey: "k")
    #expect(child.steps.prefix(2).map(\.key) == base.steps.map(\.key) && child.steps.count == 3)
    #expect(child.rootKey == base.rootKey)
}

/// ADD of a URL or a git repository: fetched when the step runs, keyed by what names it.
@Suite struct RemoteAddTests {
    @Test func remoteSourcesAreToldApartAsBuildKitDoes() {
        #expect(RemoteSource("https://example.org/a/b.tar.gz?x=1") == .http("https://example.org/a/b.tar.gz?x=1"))
        #expect(RemoteSource("https://example.org/a/b.tar.gz?x=1")?.fileName == "b.tar.gz")
        #expect(RemoteSource("https://example.org")?.fileName == "index.html")
        #expect(RemoteSource("https://github.com/moby/buildkit.git#v0.12.0") == .git(repository: "https://github.com/moby/buildkit.git", ref: "v0.12.0"))
        #expect(RemoteSource("git@github.com:moby/buildkit.git") == .git(repository: "git@github.com:moby/buildkit.git", ref: nil))
        #expect(RemoteSource("src/app.tar") == nil && RemoteSource("http.txt") == nil)
    }

    @Test func anAddOfAURLIsParsedAndKeyedByItsURLAndChecksum() throws {
        let sum = "sha256:" + String(repeating: "a", count: 64)
        let r = try parse("FROM scratch\nADD --checksum=\(sum) https://example.org/x.txt /srv/\nADD https://example.org/y.git#main /src\n")
        #expect(r.steps[0].remoteSources == ["https://example.org/x.txt"] && r.steps[0].flags["checksum"] == sum)
        let plan = try BuildPlan.make(r, baseKey: "k", missingSources: .shown)
        #expect(plan.steps[0].sources.isEmpty && plan.steps[0].missing.isEmpty, "a URL is not a context path")
        var other = r
        other.steps[0].flags["checksum"] = "sha256:" + String(repeating: "b", count: 64)
        #expect(try BuildPlan.make(other, baseKey: "k").steps[0].key != plan.steps[0].key)
    }
}

/// What BuildKit's parser corpus (scripts/parser-corpus) found refused here and accepted there.
@Suite struct CorpusFindingsTests {
    @Test func labelTakesTheOlderKeyValueForm() throws {
        let r = try parse("FROM scratch\nLABEL maintainer Erik Hollensbe <erik@example.org>\n")
        #expect(r.steps[0].instruction == .label([KeyValue("maintainer", "Erik Hollensbe <erik@example.org>")]))
    }

    @Test func anEmptyExecFormClearsCmdAndEntrypoint() throws {
        let r = try parse("FROM scratch\nCMD []\nENTRYPOINT []\n")
        #expect(r.steps.map(\.instruction) == [.cmd(.exec([])), .entrypoint(.exec([]))])
        #expect(throws: RecipeError.self) { try parse("FROM scratch\nRUN []\n") }
    }

    @Test func debianWithoutASuiteIsDockersLatestFromTheStore() throws {
        #expect(try parse("FROM debian\n").base == .local("debian:latest"))
    }
}
