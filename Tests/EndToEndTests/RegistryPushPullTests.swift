import Foundation
import Testing
import TestSupport

/// `imgbench push` and `imgbench pull` end to end, against Debian's docker-registry started by
/// the test (TestSupport's `LocalRegistry`), on the outputs of `Recipes/tiny` (a cache hit once
/// the other tests built it). Part of the serialized `BuildTests`, whose cache it shares.
extension BuildTests {
    @Test(.enabled(if: LocalRegistry.isAvailable, "needs docker-registry, openssl and htpasswd (scripts/install-deps.sh)"))
    func pushThenPullGivesTheSameOutputsThatBoot() throws {
        let registry = try LocalRegistry()
        let dir = try TempDir("registry-tiny", in: Self.scratch)
        let out = dir.file("tiny")
        let built = try build(Self.tiny, output: out)
        try #require(built.status == 0, "imgbench build: \(built.stderr.suffix(2000))")
        let digest = try #require(try readReport(out).outputs.imageDigest)
        let ref = "\(registry.address)/imgbench/tiny:v1"

        let push = try imgbench("push", out, ref, "--progress", "plain")
        try #require(push.status == 0, "imgbench push: \(push.output)")
        #expect(try Self.skopeo(["inspect", "--tls-verify=false", "docker://\(ref)"]).contains("\"Digest\": \"\(digest)\""))
        let tags = try Self.skopeo(["list-tags", "--tls-verify=false", "docker://\(registry.address)/imgbench/tiny"])
        #expect(tags.contains("\"v1-vm\"") && tags.contains("\"sha256-\(digest.dropFirst(7))\""), "the VM tag and the referrers tag: \(tags)")

        // skopeo copies the image to a layout that umoci unpacks.
        _ = try Self.skopeo(["copy", "--src-tls-verify=false", "docker://\(ref)", "oci:\(dir.file("copy")):tiny"])
        let umoci = try HostTool.run("umoci", package: "umoci", ["unpack", "--image", "\(dir.file("copy")):tiny", dir.file("unpacked")])
        #expect(umoci.status == 0 && FileManager.default.fileExists(atPath: dir.file("unpacked/rootfs/opt/tiny/greeting.txt")), "umoci: \(umoci.output)")

        try expectContainerDisk("docker://\(ref)-vm", in: dir)
        try expectAttachedReportIsABaseline(ref, out: out, registry: registry)
        try expectInterruptedPullLeavesNothing(ref, into: dir.file("interrupted"))
        try expectPulled(ref, into: dir.file("pulled"), like: out, digest: digest)
    }

    /// `check --baseline REF` and `report REF` read the report attached to the image; a tag with
    /// no image is one line naming the registry and repository, exit 2.
    func expectAttachedReportIsABaseline(_ ref: String, out: String, registry: LocalRegistry) throws {
        let check = try imgbench("check", "\(out)/report.json", "--baseline", ref)
        #expect(check.status == 0 && check.stdout.contains("against \(ref): within budget"), "imgbench check --baseline \(ref): \(check.output)")
        let report = try imgbench("report", ref)
        #expect(report.status == 0 && report.stdout.contains("tiny"), "imgbench report \(ref): \(report.output)")
        let missing = "\(registry.address)/imgbench/none:v1"
        let r = try imgbench("check", "\(out)/report.json", "--baseline", missing)
        #expect(r.status == 2 && r.errorLines.count == 1
                && r.stderr.hasPrefix("imgbench: error: registry \(registry.address), repository imgbench/none: manifest v1 not found"), "\(r.stderr)")
    }

    /// Ctrl-C while a pull unpacks the bundle: exit 130, and neither DIR nor DIR.partial is left.
    func expectInterruptedPullLeavesNothing(_ ref: String, into folder: String) throws {
        let p = try RunningProcess(try IMGBenchBinary.path(), ["pull", ref, folder, "--progress", "plain"])
        let unpacking = p.wait(upTo: 120) { _, err in err.contains("==> runtime bundle") }
        kill(p.pid, SIGINT)
        let r = try #require(p.finish(within: 60), "imgbench pull did not end after SIGINT")
        #expect(unpacking && r.status == 130, "exit \(r.status): \(r.stderr.suffix(500))")
        #expect(!FileManager.default.fileExists(atPath: folder) && !FileManager.default.fileExists(atPath: folder + ".partial"),
                "left behind: \(r.stderr.suffix(300))")
    }

    /// The containerDisk image holds the qcow2 at /disk/tiny.qcow2, owned 107:107, as KubeVirt looks for it.
    func expectContainerDisk(_ source: String, in dir: TempDir) throws {
        _ = try Self.skopeo(["copy", "--src-tls-verify=false", source, "oci:\(dir.file("vm-copy")):vm"])
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("vm-copy/index.json")))) as? [String: Any]
        let manifestDigest = try #require(((index?["manifests"] as? [[String: Any]])?.first?["digest"] as? String)?.dropFirst(7))
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("vm-copy/blobs/sha256/\(manifestDigest)")))) as? [String: Any]
        let layer = try #require(((manifest?["layers"] as? [[String: Any]])?.first?["digest"] as? String)?.dropFirst(7))
        let listing = try runProcess("/bin/tar", ["--numeric-owner", "-tvf", dir.file("vm-copy/blobs/sha256/\(layer)")])
        let line = listing.stdout.split(separator: "\n").first { $0.hasSuffix(" disk/tiny.qcow2") } ?? ""
        #expect(line.contains("107/107"), "disk/tiny.qcow2 owned by 107:107: \(listing.output)")
        #expect(listing.stdout.contains("boot/vmlinuz"), "\(listing.output)")
    }

    /// Pulled into an empty folder: the same image digest, the same disk, a bundle runc runs, a
    /// report the gate reads, and a disk that boots.
    func expectPulled(_ ref: String, into pulled: String, like out: String, digest: String) throws {
        let pull = try imgbench("pull", ref, pulled, "--progress", "plain")
        try #require(pull.status == 0, "imgbench pull: \(pull.output)")
        #expect(try Self.skopeo(["inspect", "oci:\(pulled)/oci:tiny"]).contains("\"Digest\": \"\(digest)\""))
        try Qemu.imgOK("compare", "-f", "qcow2", "-F", "qcow2", "\(pulled)/vm/disk.qcow2", "\(out)/vm/disk.qcow2")
        let id = "imgbench-pull-\(UUID().uuidString.prefix(8).lowercased())"
        let runc = try HostTool.run("runc", package: "runc", ["run", "--bundle", "\(pulled)/bundle", id])
        _ = try? HostTool.run("runc", package: "runc", ["delete", "--force", id])
        #expect(runc.status == 0 && runc.stdout == "tiny says: hello from a RUN step\n", "runc run: \(runc.output)")
        let check = try imgbench("check", "\(pulled)/report.json", "--baseline", "\(out)/report.json")
        #expect(check.status == 0, "imgbench check: \(check.output)")
        let boot = try imgbench("boot", pulled, "--timeout", "150")
        #expect(boot.status == 0 && boot.stdout.contains("booted"), "imgbench boot of the pulled disk: \(boot.output)")
    }

    @Test(.enabled(if: LocalRegistry.isAvailable, "needs docker-registry, openssl and htpasswd (scripts/install-deps.sh)"))
    func wrongCredentialsAndAStoppedRegistryGiveOneClearLine() throws {
        let registry = try LocalRegistry(tls: true)
        let dir = try TempDir("registry-auth", in: Self.scratch)
        let out = dir.file("tiny")
        try #require(try build(Self.tiny, output: out).status == 0)
        let ref = "\(registry.address)/imgbench/tiny:v1"
        let certDir = try #require(registry.certDir)

        let wrong = try runProcess(try IMGBenchBinary.path(), ["push", out, ref, "--cert-dir", certDir, "--progress", "none"],
                                   environment: ["REGISTRY_AUTH_FILE": try registry.authFile(password: "wrong")])
        #expect(wrong.status == 1 && wrong.errorLines.count == 1, "\(wrong.output)")
        let line = wrong.errorLines.first ?? ""
        #expect(line.hasPrefix("imgbench: error: registry \(registry.address), repository imgbench/tiny:") && line.contains("HTTP 401"), "\(line)")
        let creds = "\(registry.username):\(registry.password)"
        let absent = try HostTool.run("skopeo", package: "skopeo", ["inspect", "--cert-dir", certDir, "--creds", creds, "docker://\(ref)"])
        #expect(absent.status != 0, "nothing under the tag after a refused push")

        let right = try runProcess(try IMGBenchBinary.path(), ["push", out, ref, "--cert-dir", certDir, "--progress", "none"],
                                   environment: ["REGISTRY_AUTH_FILE": try registry.authFile()])
        #expect(right.status == 0, "\(right.output)")

        registry.stop()
        let stopped = try imgbench("push", out, ref, "--cert-dir", certDir, "--progress", "none")
        #expect(stopped.status == 1 && stopped.errorLines.count == 1 && stopped.stderr.contains("connection refused"), "\(stopped.output)")
    }

    static func skopeo(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let r = try HostTool.run("skopeo", package: "skopeo", args)
        #expect(r.status == 0, "skopeo \(args.joined(separator: " ")): \(r.output)", sourceLocation: sourceLocation)
        return r.stdout
    }
}
