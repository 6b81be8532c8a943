import Foundation
import Testing
import TestSupport

/// Issue 14: a recipe built FROM an image an earlier build tagged (the local image store), a
/// stage built FROM another stage, and `COPY --from=IMAGE`; both images of each, and the VM side
/// continuing the other build's chain.
extension BuildTests {
    @Test func aRecipeBuildsFromAnotherBuiltImageByTagAndFromAStage() throws {
        let dir = try TempDir("local-image", in: Self.scratch)
        defer { dir.cleanup() }
        // A name of its own: the store outlives this test's runs in the suite's cache.
        let tag = "imgbench-e2e-parent-\(UUID().uuidString.prefix(8).lowercased()):v1"
        let parent = try writeRecipe(dir, "parent", Self.head + "RUN echo parent > /parent.txt\nONBUILD RUN echo trigger > /onbuild.txt\n")
        let p = try build(parent, output: dir.file("parent-out"), arguments: ["-t", tag])
        try #require(p.status == 0, "\(p.output)")
        let parentReport = try readReport(dir.file("parent-out"))
        let parentChain = try #require(parentReport.outputs.vmChain).map { ($0 as NSString).lastPathComponent }

        // FROM the tag: the parent's ONBUILD trigger runs first; the container image has the
        // parent's layers and the child's; the VM chain is the parent's, finalisation included,
        // with the child's links on top.
        let child = try writeRecipe(dir, "child", "# vm-size=1G\n# vm-kernel=host\nFROM \(tag)\nRUN cat /parent.txt > /child.txt\n")
        let c = try build(child, output: dir.file("child-out"))
        try #require(c.status == 0, "\(c.output)")
        #expect(c.stderr.contains("vm: continuing the chain of \(tag)"), "\(c.stderr.suffix(2000))")
        let report = try readReport(dir.file("child-out"))
        let chain = try #require(report.outputs.vmChain).map { ($0 as NSString).lastPathComponent }
        #expect(Array(chain.prefix(parentChain.count)) == parentChain && chain.count == parentChain.count + 3, "\(chain) on \(parentChain)")
        #expect(report.steps.map(\.instruction) == ["RUN echo trigger > /onbuild.txt", "RUN cat /parent.txt > /child.txt"])
        #expect(try String(contentsOfFile: dir.file("child-out") + "/bundle/rootfs/child.txt", encoding: .utf8) == "parent\n")
        #expect(try String(contentsOfFile: dir.file("child-out") + "/bundle/rootfs/onbuild.txt", encoding: .utf8) == "trigger\n")
        let raw = dir.file("child.raw")
        try Qemu.imgOK("convert", "-O", "raw", dir.file("child-out") + "/vm/disk.qcow2", raw)
        #expect(try DiskFile.read(raw, "/child.txt").content == Data("parent\n".utf8))
        #expect(try DiskFile.read(raw, "/onbuild.txt").content == Data("trigger\n".utf8))
        try? FileManager.default.removeItem(atPath: raw)
        let skopeo = try HostTool.run("skopeo", package: "skopeo", ["inspect", "oci:\(dir.file("child-out"))/oci:child"])
        let layers = ((try? JSONSerialization.jsonObject(with: Data(skopeo.stdout.utf8))) as? [String: Any])?["Layers"] as? [String]
        #expect(layers?.count == 4, "the parent's base and step layers and the child's two: \(skopeo.output)")
        func onBuild(_ out: String, _ tag: String) throws -> [String]? {
            let c = try HostTool.run("skopeo", package: "skopeo", ["inspect", "--config", "--raw", "oci:\(out)/oci:\(tag)"])
            let doc = (try? JSONSerialization.jsonObject(with: Data(c.stdout.utf8))) as? [String: Any]
            return (doc?["config"] as? [String: Any])?["OnBuild"] as? [String]
        }
        #expect(try onBuild(dir.file("parent-out"), tag) == ["RUN echo trigger > /onbuild.txt"])
        #expect(try onBuild(dir.file("child-out"), "child") == nil, "the triggers ran here; they are not handed on")

        // A stage FROM a stage, and COPY --from an image (the tag): both images get both files.
        let staged = try writeRecipe(dir, "staged", """
            # vm-size=1G
            # vm-kernel=host
            FROM debian:bookworm AS base
            ENV WHO=stage
            RUN echo "from $WHO" > /base.txt
            FROM base
            COPY --from=\(tag) /parent.txt /copied.txt
            RUN cat /base.txt /copied.txt > /seen.txt
            """)
        let s = try build(staged, output: dir.file("staged-out"))
        try #require(s.status == 0, "\(s.output)")
        #expect(try String(contentsOfFile: dir.file("staged-out") + "/bundle/rootfs/seen.txt", encoding: .utf8) == "from stage\nparent\n")
        try Qemu.imgOK("convert", "-O", "raw", dir.file("staged-out") + "/vm/disk.qcow2", raw)
        #expect(try DiskFile.read(raw, "/seen.txt").content == Data("from stage\nparent\n".utf8))
        try? FileManager.default.removeItem(atPath: raw)

        // A name nothing matches: exit 2 at the FROM line, naming the reference; nothing built.
        let missing = try writeRecipe(dir, "missing", "# vm-size=1G\n# vm-kernel=host\nFROM imgbench-e2e-no-such:v9\nRUN true\n")
        let m = try build(missing, output: dir.file("missing-out"))
        #expect(m.status == 2, "\(m.output)")
        #expect(m.stderr.contains("\(missing)/Containerfile:3:1: FROM imgbench-e2e-no-such:v9: no image imgbench-e2e-no-such:v9 in the local image store"), "\(m.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("missing-out")))
    }

    /// `--vm-backend guestfs` cannot mount: a VM step with `RUN --mount` is refused before
    /// anything is built, at its line.
    @Test func guestfsRefusesARunMountAtItsLine() throws {
        let dir = try TempDir("guestfs-mount", in: Self.scratch)
        defer { dir.cleanup() }
        let recipe = try writeRecipe(dir, "gm", Self.head + "RUN true\nRUN --mount=type=tmpfs,target=/t true\n")
        let r = try build(recipe, output: dir.file("out"), arguments: ["--vm-backend", "guestfs"])
        #expect(r.status == 2, "\(r.output)")
        #expect(r.stderr.contains("\(recipe)/Containerfile:5:1: RUN --mount needs --vm-backend loop"), "\(r.stderr)")
        #expect(!r.stderr.contains("==> [container"), "a step ran before the refusal: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
    }

    /// A `vm-boot=firmware` finalisation installs GRUB through a loop device: `--vm-backend
    /// guestfs` (and so a rootless build) refuses it before anything is built, at the directive.
    @Test func guestfsRefusesAFirmwareDiskAtItsDirective() throws {
        let dir = try TempDir("guestfs-firmware", in: Self.scratch)
        defer { dir.cleanup() }
        let recipe = try writeRecipe(dir, "gf", "# vm-size=1G\n# vm-kernel=host\n# vm-boot=firmware\nFROM debian:bookworm\nRUN true\n")
        let r = try build(recipe, output: dir.file("out"), arguments: ["--vm-backend", "guestfs"])
        #expect(r.status == 2, "\(r.output)")
        #expect(r.stderr.contains("\(recipe)/Containerfile:3:3: vm-boot=firmware needs --vm-backend loop"), "\(r.stderr)")
        #expect(!r.stderr.contains("==> [container"), "a step ran before the refusal: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
    }
}

extension BuildTests {
    /// `FROM debian:SUITE-slim`: a base of its own without documentation (but copyright files),
    /// man pages and locales, whose dpkg settings keep them out of what steps install later.
    @Test func aSlimDebianBaseHasNoDocumentationManPagesOrLocales() throws {
        let dir = try TempDir("slim", in: Self.scratch)
        defer { dir.cleanup() }
        let recipe = try writeRecipe(dir, "slim", "# vm-size=1G\n# vm-kernel=host\nFROM debian:bookworm-slim\nRUN true\n")
        let r = try build(recipe, output: dir.file("out"), arguments: ["--images", "container"])
        try #require(r.status == 0, "\(r.output)")
        let root = dir.file("out") + "/bundle/rootfs"
        let fm = FileManager.default
        // Regular files: dpkg's path-exclude leaves folders and symlinks, as in Debian's slim images.
        let docs = try fm.subpathsOfDirectory(atPath: "\(root)/usr/share/doc").filter { p in
            var st = stat()
            return !p.hasSuffix("/copyright") && lstat("\(root)/usr/share/doc/\(p)", &st) == 0 && st.st_mode & S_IFMT == S_IFREG
        }
        #expect(docs.isEmpty, "documentation beyond copyright files: \(docs.prefix(10))")
        #expect(fm.fileExists(atPath: "\(root)/usr/share/doc/dpkg/copyright"))
        #expect(((try? fm.subpathsOfDirectory(atPath: "\(root)/usr/share/man")) ?? []).allSatisfy { !$0.hasSuffix(".gz") })
        #expect(((try? fm.contentsOfDirectory(atPath: "\(root)/usr/share/locale")) ?? []).allSatisfy { $0 == "locale.alias" })
        let cfg = try fm.contentsOfDirectory(atPath: "\(root)/etc/dpkg/dpkg.cfg.d").map { (try? String(contentsOfFile: "\(root)/etc/dpkg/dpkg.cfg.d/\($0)", encoding: .utf8)) ?? "" }.joined()
        #expect(cfg.contains("path-exclude=/usr/share/man/*"), "\(cfg)")
        let report = try readReport(dir.file("out"))
        #expect(report.base.description?.contains("debian:bookworm-slim") == true)
    }
}

extension BuildTests {
    /// ADD of an http URL (from a server the test starts: this host may have no other network)
    /// with and without --checksum, and of a git repository over git's dumb HTTP protocol; a
    /// wrong checksum and a source that cannot be fetched stop the build at the line, naming it.
    @Test func addFetchesAURLAndAGitRepositoryOrSaysWhyNot() throws {
        let dir = try TempDir("add-remote", in: Self.scratch)
        defer { dir.cleanup() }
        let served = try dir.sub("served")
        try "fetched over http\n".write(toFile: "\(served)/hello.txt", atomically: true, encoding: .utf8)
        // A repository served as files: git's dumb HTTP protocol needs only GET.
        let work = try dir.sub("work")
        try "from git\n".write(toFile: "\(work)/README", atomically: true, encoding: .utf8)
        for args in [["init", "-q", "-b", "main", work], ["-C", work, "add", "README"],
                     ["-C", work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"],
                     ["clone", "-q", "--bare", work, "\(served)/repo.git"], ["-C", "\(served)/repo.git", "update-server-info"]] {
            let g = try HostTool.run("git", package: "git", args)
            try #require(g.status == 0, "git \(args): \(g.output)")
        }
        let server = try LocalFileServer(root: served)
        defer { server.stop() }
        let sum = "sha256:" + String(try HostTool.run("sha256sum", package: "coreutils", ["\(served)/hello.txt"]).stdout.prefix(64))
        let recipe = try writeRecipe(dir, "add", Self.head + """
            ADD --checksum=\(sum) \(server.url("hello.txt")) /srv/
            ADD \(server.url("hello.txt")) /srv/named.txt
            ADD \(server.url("repo.git"))#main /src
            RUN cat /srv/hello.txt /srv/named.txt /src/README > /seen.txt && stat -c %a /srv/hello.txt >> /seen.txt && test ! -e /src/.git
            """)
        let r = try build(recipe, output: dir.file("out"))
        try #require(r.status == 0, "\(r.output)")
        let expected = "fetched over http\nfetched over http\nfrom git\n600\n"
        #expect(try String(contentsOfFile: dir.file("out") + "/bundle/rootfs/seen.txt", encoding: .utf8) == expected)
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", dir.file("out") + "/vm/disk.qcow2", raw)
        #expect(try DiskFile.read(raw, "/seen.txt").content == Data(expected.utf8))
        try? FileManager.default.removeItem(atPath: raw)

        let wrong = "sha256:" + String(repeating: "0", count: 64)
        let bad = try writeRecipe(dir, "bad", Self.head + "ADD --checksum=\(wrong) \(server.url("hello.txt")) /srv/\n")
        let b = try build(bad, output: dir.file("bad-out"), arguments: ["--images", "container"])
        #expect(b.status == 1 && b.stderr.contains("\(bad)/Containerfile:4:1: ADD \(server.url("hello.txt")): its content is \(sum), not --checksum=\(wrong)"), "\(b.stderr)")
        let gone = "http://127.0.0.1:\(try LocalRegistry.freePort())/nothing.txt"
        let unreachable = try writeRecipe(dir, "unreachable", Self.head + "ADD \(gone) /srv/\n")
        let u = try build(unreachable, output: dir.file("u-out"), arguments: ["--images", "container"])
        #expect(u.status == 1 && u.stderr.contains("\(unreachable)/Containerfile:4:1: ADD \(gone): cannot be fetched"), "\(u.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("u-out")))
    }
}
