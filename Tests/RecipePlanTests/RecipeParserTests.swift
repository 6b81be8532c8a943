import Host
import OCI
@testable import RecipePlan
import Registry
import Testing

private func parse(_ text: String, args: [String: String] = [:]) throws -> Recipe {
    try RecipeParser(file: "recipes/demo/Containerfile", buildArgs: args).parse(text)
}

private func parseError(_ text: String) -> RecipeError? {
    do {
        _ = try parse(text)
        return nil
    } catch let e as RecipeError {
        return e
    } catch {
        return nil
    }
}

@Test func directivesSetTheVMDisk() throws {
    let r = try parse("""
        # vm-size=8G
        # vm-cluster-size=128K
        # base-variant=apt
        FROM debian:bookworm
        RUN true
        """)
    #expect(r.vm.size == 8 << 30)
    #expect(r.vm.clusterSize == 128 << 10)
    #expect(r.base == .debian(suite: "bookworm", variant: "apt"))
    #expect(r.name == "demo")
}

@Test func everyInstructionParses() throws {
    let r = try parse("""
        ARG SUITE=bookworm
        FROM debian:${SUITE}
        ARG VERSION=1.2
        ENV APP=/srv/app PATH_EXTRA="a b"
        WORKDIR $APP
        COPY --chown=1000:1000 --chmod=0755 run.sh ./bin/
        ADD data.tar /data
        RUN --target=vm apt-get install -y linux-image-amd64
        RUN ["/bin/echo", "exec form"]
        USER app
        LABEL org.example.version=$VERSION "quoted key"=v
        EXPOSE 80 443/udp
        VOLUME ["/var/lib/db"]
        SHELL ["/bin/bash", "-c"]
        CMD echo $APP
        ENTRYPOINT ["/usr/bin/tini", "--"]
        STOPSIGNAL SIGTERM
        """)
    #expect(r.base == .debian(suite: "bookworm", variant: "minbase"))
    let i = r.steps.map(\.instruction)
    #expect(i[0] == .arg(name: "VERSION", value: "1.2"))
    #expect(i[1] == .env([KeyValue("APP", "/srv/app"), KeyValue("PATH_EXTRA", "a b")]))
    #expect(i[2] == .workdir("/srv/app"))
    #expect(i[3] == .copy(sources: ["run.sh"], destination: "/srv/app/bin/", chown: "1000:1000", chmod: "0755"))
    #expect(i[4] == .add(sources: ["data.tar"], destination: "/data", chown: nil, chmod: nil))
    #expect(i[5] == .run(.shell("apt-get install -y linux-image-amd64")))
    #expect(r.steps[5].target == .vm)
    #expect(i[6] == .run(.exec(["/bin/echo", "exec form"])))
    #expect(i[7] == .user("app"))
    #expect(i[8] == .label([KeyValue("org.example.version", "1.2"), KeyValue("quoted key", "v")]))
    #expect(i[9] == .expose(["80/tcp", "443/udp"]))
    #expect(i[10] == .volume(["/var/lib/db"]))
    #expect(i[11] == .shell(["/bin/bash", "-c"]))
    #expect(i[12] == .cmd(.shell("echo $APP")))
    #expect(i[13] == .entrypoint(.exec(["/usr/bin/tini", "--"])))
    #expect(i[14] == .stopSignal("SIGTERM"))
    // What RUN sees: ENV and ARG in force at that step.
    #expect(r.steps[5].environment.contains(KeyValue("APP", "/srv/app")))
    #expect(r.steps[5].buildArgs == [KeyValue("VERSION", "1.2")])
}

@Test func continuationsAndCommentsJoinLines() throws {
    let r = try parse("""
        FROM scratch
        # a comment
        RUN apt-get update && \\
        # a comment inside the continuation
            apt-get install -y \\
              curl
        """)
    #expect(r.base == .scratch)
    #expect(r.steps.count == 1)
    #expect(r.steps[0].instruction == .run(.shell("apt-get update &&     apt-get install -y       curl")))
    #expect(r.steps[0].location.line == 3)
}

@Test func buildArgsOverrideDefaults() throws {
    let r = try parse("FROM scratch\nARG N=1\nENV M=${N:-none} O=${UNSET:-dflt} P=${N:+set}\n", args: ["N": "7"])
    #expect(r.steps[1].instruction == .env([KeyValue("M", "7"), KeyValue("O", "dflt"), KeyValue("P", "set")]))
}

@Test func ociBaseWithTag() throws {
    #expect(try parse("FROM oci:../base:v1\n").base == .ociLayout(path: "../base", tag: "v1"))
    #expect(try parse("FROM oci:/srv/layouts/base\n").base == .ociLayout(path: "/srv/layouts/base", tag: nil))
}

@Test func registryBasesAreTheReferencesDockerTellsApart() throws {
    let hex = String(repeating: "ab", count: 32)
    #expect(try parse("FROM localhost:5000/base/tiny:v1\n").base
        == .registry(ImageReference(registry: "localhost:5000", repository: "base/tiny", tag: "v1")))
    #expect(try parse("FROM registry.example.org/tiny\n").base
        == .registry(ImageReference(registry: "registry.example.org", repository: "tiny", tag: nil)))
    #expect(try parse("FROM debian@sha256:\(hex)\n").base
        == .registry(ImageReference(registry: "docker.io", repository: "library/debian", digest: try Digest(parsing: "sha256:\(hex)"))))
    #expect(try parse("FROM debian:bookworm\n").base == .debian(suite: "bookworm", variant: "minbase"))
    let bad = try #require(parseError("FROM 127.0.0.1:5000/Tiny:v1\n"))
    #expect(bad.location.line == 1 && bad.location.column == 6 && bad.message.contains("repository \"Tiny\""), "\(bad)")
}

@Test func singleQuotesAndEscapesKeepDollars() throws {
    let r = try parse("FROM scratch\nENV A=x\nENV B='$A' C=\\$A D=\"$A\"\n")
    #expect(r.steps[1].instruction == .env([KeyValue("B", "$A"), KeyValue("C", "$A"), KeyValue("D", "x")]))
}

@Test(arguments: [
    ("RUN true\n", 1, 1, "must start with FROM"),
    ("FROM debian:bookworm\nFROB x\n", 2, 1, "unknown instruction 'FROB'"),
    ("FROM debian:bookworm\nRUN --mount=type=cache true\n", 2, 5, "RUN --mount needs target=PATH"),
    ("FROM debian:bookworm\nRUN --target=host true\n", 2, 5, "--target must be"),
    ("FROM Ubuntu:22.04\n", 1, 6, "unsupported base"),
    ("# vm-size=tiny\nFROM scratch\n", 1, 1, "vm-size"),
    ("# vm-sise=4G\nFROM scratch\n", 1, 1, "unknown parser directive"),
    ("FROM scratch\nCOPY onlyone\n", 2, 1, "at least one source"),
    ("FROM scratch\nENV A=\"unterminated\n", 2, 7, "unterminated quote"),
    ("FROM scratch\nSHELL /bin/bash -c\n", 2, 1, "exec (JSON array) form"),
    ("FROM scratch\nEXPOSE http\n", 2, 8, "is not a port"),
    ("FROM scratch\nADD ftp://example.org/x /x\n", 2, 1, "only http(s) URLs and git repositories"),
    ("FROM scratch\nADD --checksum=sha256:00 https://example.org/x /x\n", 2, 1, "give sha256:HEX"),
    ("FROM scratch\nADD --checksum=sha256:\(String(repeating: "0", count: 64)) a https://example.org/x /x\n", 2, 1, "applies to one http(s) source"),
    ("FROM scratch\nENV --target=vm A=1\n", 2, 5, "does not take --target"),
    ("FROM scratch\nENV A=${B:?must be set}\n", 2, 7, "B: must be set"),
    ("", 1, 1, "no FROM"),
])
func refusedWithFileLineColumn(text: String, line: Int, column: Int, message: String) throws {
    let e = try #require(parseError(text))
    #expect(e.location.file == "recipes/demo/Containerfile")
    #expect(e.location.line == line)
    #expect(e.location.column == column)
    #expect(e.message.contains(message), "\(e)")
    #expect(e.description.hasPrefix("recipes/demo/Containerfile:\(line):\(column): "))
}

@Test func ignoreFilePatterns() {
    let ig = ContextIgnore(patterns: ["# comment", "*.log", "build/", "**/node_modules", "!keep.log", "docs/*.md", "!docs/README.md"])
    #expect(ig.isIgnored("debug.log"))
    #expect(!ig.isIgnored("keep.log"))
    #expect(ig.isIgnored("build/out/a.o"))
    #expect(ig.isIgnored("web/app/node_modules/x/index.js"))
    #expect(ig.isIgnored("docs/guide.md"))
    #expect(!ig.isIgnored("docs/README.md"))
    #expect(!ig.isIgnored("src/main.c"))
    #expect(!ig.isIgnored("sub/debug.log"))
}

@Test func vmBootFirmwareIsOptInAndNeedsAnExt4DiskOfHalfAGigabyte() throws {
    #expect(try parse("FROM debian:bookworm\nRUN true\n").vm.boot == .kernel)
    let r = try parse("# vm-size=1G\n# vm-boot=firmware\nFROM debian:bookworm\nRUN true\n")
    #expect(r.vm.boot == .firmware)
    // The size check does not depend on the order of the directives.
    let small = parseError("# vm-boot=firmware\n# vm-size=256M\nFROM debian:bookworm\n")
    #expect(small?.description.contains("recipes/demo/Containerfile:1:1") == true)
    #expect(small?.description.contains("at least 512M") == true)
    let xfs = parseError("# vm-size=1G\n# vm-filesystem=xfs\n# vm-boot=firmware\nFROM debian:bookworm\n")
    #expect(xfs?.description.contains("Containerfile:3:1") == true)
    #expect(xfs?.description.contains("ext4") == true)
    #expect(parseError("# vm-boot=uefi\nFROM debian:bookworm\n")?.description.contains("kernel, firmware") == true)
}
