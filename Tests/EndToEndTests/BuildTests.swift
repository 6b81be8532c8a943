import Foundation
import Testing
import TestSupport

/// `imgbench build` and `imgbench boot` end to end, on `Recipes/tiny` and small recipes written
/// for a test: the outputs cross-checked with skopeo, umoci, runc, qemu-img and debugfs; the cache
/// per step from report.json; failures and Ctrl-C leaving nothing behind.
///
/// Needs root (mounts, namespaces, loop devices) and, the first time, the network (mmdebstrap makes
/// the Debian base). One cache folder serves every test of the run and later runs, so the base is
/// made once; the suite is serialized so that its builds do not fight over that cache.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root: builds mount overlays and loop devices and run steps in namespaces"))
struct BuildTests {
    /// `IMGBENCH_TEST_CACHE` moves it, so that two checkouts can run the suite side by side.
    static let cache: String = {
        if let p = ProcessInfo.processInfo.environment["IMGBENCH_TEST_CACHE"], !p.isEmpty { return p }
        return "/var/tmp/imgbench-test-cache"
    }()
    static let tiny: String = {
        // Tests/EndToEndTests/BuildTests.swift -> the package root.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent("Recipes/tiny").path
    }()
    /// Outputs go next to the cache (same filesystem: the chain is hard-linked, not copied).
    static let scratch = "/var/tmp"

    /// The directives and base of the small recipes: the same as tiny's, so their base is shared.
    static let head = "# vm-size=1G\n# vm-kernel=host\nFROM debian:bookworm\n"

    // MARK: - Recipes/tiny

    @Test func tinyBuildsBothImagesThatAgree() throws {
        let dir = try TempDir("build-tiny", in: Self.scratch)
        let out = dir.file("tiny")
        let r = try build(Self.tiny, output: out)
        try #require(r.status == 0, "imgbench build recipes/tiny: exit \(r.status)\n\(r.stderr.suffix(3000))")
        let report = try readReport(out)
        #expect(report.recipe == "tiny")
        #expect(report.outputs.ociLayout == "oci" && report.outputs.bundle == "bundle" && report.outputs.vmDisk == "vm/disk.qcow2")

        // The OCI layout: skopeo reads the tag, and its digest is the report's.
        let inspect = try HostTool.run("skopeo", package: "skopeo", ["inspect", "oci:\(out)/oci:tiny"])
        #expect(inspect.status == 0, "skopeo inspect: \(inspect.output)")
        let inspected = (try? JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(inspected["Digest"] as? String == report.outputs.imageDigest, "skopeo: \(inspect.stdout.prefix(400))")
        let layers = (inspected["Layers"] as? [String]) ?? []
        #expect(layers.count == 1 + report.steps.filter { $0.container != nil }.count, "one layer for the base and each file step: \(layers)")

        // umoci unpacks it: that root is the container root the file comparisons read.
        let unpacked = dir.file("unpacked")
        let umoci = try HostTool.run("umoci", package: "umoci", ["unpack", "--image", "\(out)/oci:tiny", unpacked])
        #expect(umoci.status == 0, "umoci unpack: \(umoci.output)")
        let containerRoot = "\(unpacked)/rootfs"

        // runc runs the bundle, which prints what the recipe says.
        let id = "imgbench-e2e-\(UUID().uuidString.prefix(8).lowercased())"
        let runc = try HostTool.run("runc", package: "runc", ["run", "--bundle", "\(out)/bundle", id])
        _ = try? HostTool.run("runc", package: "runc", ["delete", "--force", id])
        #expect(runc.status == 0 && runc.stdout == "tiny says: hello from a RUN step\n", "runc run: exit \(runc.status): \(runc.output)")

        // The chain: base first, each link backed by the one before; every link and the flattened
        // disk pass qemu-img check.
        let chain = try #require(report.outputs.vmChain)
        #expect(chain.count == 2 + report.steps.filter { $0.vm != nil }.count, "base, each file step, finalisation: \(chain)")
        for link in chain {
            let q = try Qemu.check("\(out)/\(link)")
            #expect(q.status == 0 && q.corruptions == 0 && q.leaks == 0, "\(link): \(q)")
        }
        let info = try Qemu.imgOK("info", "--output=json", "--backing-chain", "\(out)/\(chain.last!)")
        let infos = (try? JSONSerialization.jsonObject(with: Data(info.stdout.utf8))) as? [[String: Any]] ?? []
        let names = infos.compactMap { ($0["filename"] as? String).map { ($0 as NSString).lastPathComponent } }
        #expect(names == chain.reversed().map { ($0 as NSString).lastPathComponent }, "qemu-img's view of the chain: \(names)")
        let disk = "\(out)/vm/disk.qcow2"
        let flat = try Qemu.check(disk)
        #expect(flat.status == 0 && flat.corruptions == 0 && flat.leaks == 0, "disk.qcow2: \(flat)")
        try Qemu.imgOK("compare", "-f", "qcow2", "-F", "qcow2", disk, "\(out)/\(chain.last!)")

        // The files of shared steps are the same in the container root and on the VM disk; each
        // target-only file is on its own side only.
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", disk, raw)
        for path in ["/opt/tiny/greeting.txt", "/opt/tiny/bin/hello"] {
            let onDisk = try DiskFile.read(raw, path)
            let inContainer = FileManager.default.contents(atPath: containerRoot + path)
            #expect(onDisk.content != nil && onDisk.content == inContainer, "\(path): disk \(onDisk), container \(inContainer.map { String(decoding: $0, as: UTF8.self) } ?? "missing")")
            let attributes = try? FileManager.default.attributesOfItem(atPath: containerRoot + path)
            let mode = (attributes?[.posixPermissions] as? Int).map { String($0, radix: 8) }
            #expect(onDisk.mode != nil && onDisk.mode == mode, "\(path): mode \(onDisk.mode ?? "?") on the disk, \(mode ?? "?") in the container")
        }
        #expect(String(decoding: FileManager.default.contents(atPath: "\(containerRoot)/opt/tiny/greeting.txt") ?? Data(), as: UTF8.self)
                == "hello from a RUN step\n")
        #expect(FileManager.default.fileExists(atPath: "\(containerRoot)/etc/imgbench-container-only"))
        #expect(try DiskFile.read(raw, "/etc/imgbench-container-only").content == nil, "the container-only file is on the VM disk")
        #expect(try DiskFile.read(raw, "/etc/imgbench-vm-only").content == Data("only on the VM disk\n".utf8))
        #expect(!FileManager.default.fileExists(atPath: "\(containerRoot)/etc/imgbench-vm-only"), "the vm-only file is in the container")
        try? FileManager.default.removeItem(atPath: raw)

        // The disk boots to the marker.
        let boot = try imgbench("boot", out, "--timeout", "150")
        #expect(boot.status == 0 && boot.stdout.contains("booted"), "imgbench boot: exit \(boot.status): \(boot.output)")
    }

    @Test func rebuildIntoTheSameFolderKeepsUntouchedOutputsAndRewritesTouchedOnes() throws {
        let dir = try TempDir("build-keep", in: Self.scratch)
        let out = dir.file("tiny")
        func inode(_ p: String) -> UInt64? {
            (try? FileManager.default.attributesOfItem(atPath: "\(out)/\(p)"))?[.systemFileNumber] as? UInt64
        }
        let first = try build(Self.tiny, output: out)
        try #require(first.status == 0, "\(first.stderr.suffix(3000))")
        let rootfs = inode("bundle/rootfs"), disk = inode("vm/disk.qcow2")

        // Again, untouched: the bundle and the flattened disk are the same files, moved over.
        let again = try build(Self.tiny, output: out)
        try #require(again.status == 0, "\(again.stderr.suffix(3000))")
        #expect(again.stderr.contains("runtime bundle of the previous build is the same and unchanged, kept"), "\(again.stderr.suffix(2000))")
        #expect(inode("bundle/rootfs") == rootfs && inode("vm/disk.qcow2") == disk, "not kept")
        let runc = try HostTool.run("runc", package: "runc", ["run", "--bundle", "\(out)/bundle", "imgbench-keep-\(getpid())"])
        _ = try? HostTool.run("runc", package: "runc", ["delete", "--force", "imgbench-keep-\(getpid())"])
        #expect(runc.status == 0 && runc.stdout == "tiny says: hello from a RUN step\n", "runc run of a kept bundle: \(runc.output)")

        // A file of the rootfs written (same size) and the disk written: both are made afresh,
        // as the image and the chain say.
        let greeting = "\(out)/bundle/rootfs/opt/tiny/greeting.txt"
        let original = try String(contentsOfFile: greeting, encoding: .utf8)
        try String(repeating: "x", count: original.utf8.count).write(toFile: greeting, atomically: false, encoding: .utf8)
        try Qemu.imgOK("resize", "\(out)/vm/disk.qcow2", "+1M")
        let third = try build(Self.tiny, output: out)
        try #require(third.status == 0, "\(third.stderr.suffix(3000))")
        #expect(!third.stderr.contains("kept"), "a touched output was kept: \(third.stderr.suffix(2000))")
        #expect(try String(contentsOfFile: greeting, encoding: .utf8) == original)
        let report = try readReport(out)
        let tip = try #require(report.outputs.vmChain?.last)
        try Qemu.imgOK("compare", "\(out)/\(tip)", "\(out)/vm/disk.qcow2")
        #expect(try Qemu.imgOK("info", "--output=json", "\(out)/vm/disk.qcow2").stdout.contains("\"virtual-size\": 1073741824"))
    }

    @Test func rebuildIsACacheHitAndAChangedStepRebuildsFromThereOnly() throws {
        let dir = try TempDir("build-cache", in: Self.scratch)
        // Built once (a hit already when an earlier test or run built it), then again: all hits.
        let first = try build(Self.tiny, output: dir.file("first"))
        try #require(first.status == 0, "\(first.stderr.suffix(3000))")
        let again = try build(Self.tiny, output: dir.file("again"))
        try #require(again.status == 0, "\(again.stderr.suffix(3000))")
        let cached = try readReport(dir.file("again"))
        let misses = cached.measures.filter { !$0.measure.cacheHit }.map(\.name)
        #expect(misses.isEmpty, "a rebuild of an unchanged recipe rebuilt: \(misses)")
        #expect(cached.measures.count == 2 + 2 * 3 + 1, "base on both sides, 3 file steps per side, finalisation: \(cached.measures.map(\.name))")
        #expect(cached.totals.cacheMisses == 0 && cached.totals.cacheHits == cached.measures.count)

        // Change the first RUN (step 5; a new text each run, so no earlier run cached it).
        let recipe = try tinyWithANewRunStep(dir, "changed")
        let changed = try build(recipe, output: dir.file("changed"))
        try #require(changed.status == 0, "\(changed.stderr.suffix(3000))")
        let report = try readReport(dir.file("changed"))
        let changedIndex = try #require(report.steps.first { $0.instruction.hasPrefix("RUN echo") }?.index)
        #expect(report.base.container?.cacheHit == true && report.base.vm?.cacheHit == true, "the base was rebuilt")
        for s in report.steps {
            let expectHit = s.index < changedIndex
            for (side, m) in [("container", s.container), ("vm", s.vm)] {
                guard let m else { continue }
                #expect(m.cacheHit == expectHit, "step \(s.index) (\(s.instruction)) on \(side): cacheHit \(m.cacheHit), expected \(expectHit)")
            }
            let before = cached.steps.first { $0.index == s.index }
            #expect((s.key == before?.key) == (s.index < changedIndex), "step \(s.index): key \(s.key.prefix(12)) vs \(before?.key.prefix(12) ?? "none")")
        }
        #expect(report.finalisation?.vm?.cacheHit == false, "the finalisation comes after the changed step")
        // The change shows on both sides.
        let greeting = try String(contentsOfFile: "\(dir.file("changed"))/bundle/rootfs/opt/tiny/greeting.txt", encoding: .utf8)
        #expect(greeting.contains("from a changed RUN step"), "container: \(greeting)")
        let raw = dir.file("changed.raw")
        try Qemu.imgOK("convert", "-O", "raw", "\(dir.file("changed"))/vm/disk.qcow2", raw)
        let onDisk = try DiskFile.read(raw, "/opt/tiny/greeting.txt").content.map { String(decoding: $0, as: UTF8.self) }
        #expect(onDisk == greeting, "vm: \(onDisk ?? "missing")")
    }

    // MARK: - Failures

    @Test func failingStepStopsCleanlyAndKeepsTheCache() throws {
        let dir = try TempDir("build-fail", in: Self.scratch)
        let out = dir.file("out")
        let mark = UUID().uuidString.prefix(8)
        let good = "RUN echo kept > /kept.txt\n"
        // A VM-only step failing (the VM side mounts the most), into a fresh output folder.
        let failingVM = try writeRecipe(dir, "failing",
            Self.head + good + "RUN --target=vm echo \"about to fail \(mark)\" && exit 3\n")
        var r = try build(failingVM, output: out, progress: "none")
        #expect(r.status == 1, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("\(failingVM)/Containerfile:5:1: step failed (exit 3)"), "the step is named: \(r.stderr)")
        #expect(r.stderr.contains("about to fail \(mark)"), "the tail of its output is shown: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out), "a failed build wrote \(out)")
        #expect(!FileManager.default.fileExists(atPath: out + ".partial"))
        expectNothingLeft(under: [Self.cache, dir.path], marker: String(mark))

        // Fixed: the earlier steps come from the cache, on both sides.
        try writeRecipe(dir, "failing", Self.head + good + "RUN --target=vm echo fixed > /fixed.txt\n")
        r = try build(failingVM, output: out)
        try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        let fixed = try readReport(out)
        let kept = try #require(fixed.steps.first)
        #expect(kept.container?.cacheHit == true && kept.vm?.cacheHit == true, "the step before the failure was not kept: \(kept)")
        #expect(fixed.base.container?.cacheHit == true && fixed.base.vm?.cacheHit == true)
        let complete = try Data(contentsOf: URL(fileURLWithPath: "\(out)/report.json"))

        // A step failing on both sides (the container side fails first) over that complete output.
        try writeRecipe(dir, "failing", Self.head + good + "RUN echo \"about to fail \(mark)\" >&2; exit 3\n")
        r = try build(failingVM, output: out, progress: "none")
        #expect(r.status == 1, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.contains("Containerfile:5:1: step failed (exit 3)") && r.stderr.contains("about to fail \(mark)"), "\(r.stderr)")
        #expect(FileManager.default.contents(atPath: "\(out)/report.json") == complete, "the previous complete output was touched")
        #expect(FileManager.default.fileExists(atPath: "\(out)/vm/disk.qcow2") && FileManager.default.fileExists(atPath: "\(out)/oci/index.json"))
        #expect(!FileManager.default.fileExists(atPath: out + ".partial") && !FileManager.default.fileExists(atPath: out + ".old"))
        expectNothingLeft(under: [Self.cache, dir.path], marker: String(mark))
    }

    /// SIGINT or SIGTERM while a RUN step runs, on either side: the step is stopped, everything
    /// released, and OUT.partial removed whole. The step runs second, after the bundle's rootfs
    /// was unpacked, so that the build's own failure path removes OUT.partial while the signal
    /// handler does (each once gave up at the first entry the other had taken, leaving 178 MB).
    @Test(arguments: [(SIGINT, "vm"), (SIGINT, "container"), (SIGTERM, "container")])
    func interruptDuringAStepReleasesEverything(signal: Int32, side: String) throws {
        let dir = try TempDir("build-int", in: Self.scratch)
        let out = dir.file("out")
        let mark = "interrupt-\(UUID().uuidString.prefix(8))"
        let recipe = try writeRecipe(dir, "interrupted",
            Self.head + "RUN echo kept > /kept.txt\nRUN --target=\(side) echo started-\(mark) | tr a-z A-Z && sleep 60 && echo \(mark) ended\n")
        let p = try RunningProcess(try IMGBenchBinary.path(), ["build", recipe, "--cache", Self.cache, "--output", out, "--progress", "plain"])
        // What the command prints (upper case), not the progress line that quotes it.
        let started = p.wait(upTo: 150) { _, err in err.contains("STARTED-\(mark.uppercased())") }
        let wasRunning = p.isRunning
        usleep(500_000)
        kill(p.pid, signal)
        let interruptedAt = Date()
        let r = p.finish(within: 45)
        let took = Date().timeIntervalSince(interruptedAt)
        try #require(started && wasRunning, "the \(side) step never started: \(r?.stderr.suffix(3000) ?? "")")
        let result = try #require(r, "imgbench build did not exit within 45 s of signal \(signal)")
        #expect(p.signal == nil && result.status == 128 + signal, "exit \(result.status), signal \(p.signal ?? 0): \(result.stderr.suffix(2000))")
        #expect(result.stderr.contains("interrupted; removed \(out).partial"), "\(result.stderr.suffix(2000))")
        #expect(took < 30, "releasing took \(took) s: the step's command was waited for rather than stopped")
        #expect(!FileManager.default.fileExists(atPath: out), "an interrupted build wrote \(out)")
        #expect(!FileManager.default.fileExists(atPath: out + ".partial"), "left: \(Self.tree(out + ".partial").prefix(10))")
        expectNothingLeft(under: [Self.cache, dir.path], marker: mark)
        #expect(!FileManager.default.fileExists(atPath: "\(Self.cache)/tmp/vm-\(p.pid)"), "the build's scratch folder is left in the cache")
        guard side == "vm" else { return }

        // The cache is still valid: the step before the interruption is a hit.
        try writeRecipe(dir, "interrupted", Self.head + "RUN echo kept > /kept.txt\n")
        let after = try build(recipe, output: out)
        try #require(after.status == 0, "\(after.stderr.suffix(3000))")
        let report = try readReport(out)
        #expect(report.steps.first?.container?.cacheHit == true && report.steps.first?.vm?.cacheHit == true, "\(report.steps)")
    }

    /// The paths under `folder`, for a message.
    static func tree(_ folder: String) -> [String] {
        (FileManager.default.subpaths(atPath: folder) ?? []).map { "\(folder)/\($0)" }
    }

    @Test(arguments: [
        ("FROBNICATE all the things\n", 4, 1, "FROBNICATE"),
        ("RUN --target=nowhere true\n", 4, 5, "nowhere"),
        ("COPY only-one-argument\n", 4, 1, "COPY"),
        // Issue 13: a source above the context, and a value doubled until it passes 1 MiB.
        ("COPY ../Containerfile /x\n", 4, 1, "outside the build context"),
        ("ENV X=aaaaaaaaaaaaaaaa\n" + String(repeating: "ENV X=${X}${X}\n", count: 40), 21, 7, "as ARG and ENV values are substituted"),
    ])
    func badRecipeExits2WithFileLineColumn(body: String, line: Int, column: Int, mentions: String) throws {
        let dir = try TempDir("build-bad", in: Self.scratch)
        let recipe = try writeRecipe(dir, "bad", Self.head + body)
        let r = try build(recipe, output: dir.file("out"), progress: "none")
        #expect(r.status == 2, "exit \(r.status): \(r.output)")
        let first = r.errorLines.first.map(String.init) ?? ""
        let prefix = "imgbench: error: \(recipe)/Containerfile:\(line):"
        #expect(first.hasPrefix(prefix), "expected \(prefix)COLUMN: MESSAGE, got: \(r.stderr)")
        let rest = first.dropFirst(prefix.count)
        let col = rest.prefix { $0.isNumber }
        #expect(Int(col) == column && rest.dropFirst(col.count).hasPrefix(": "), "column: \(first)")
        #expect(first.contains(mentions), "the message names the problem: \(first)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
    }

    // MARK: - Issue 13: CRLF recipes, FROM scratch for a VM

    @Test func aCRLFRecipeBuildsAsItsLFTwin() throws {
        let dir = try TempDir("build-crlf", in: Self.scratch)
        let recipe = try writeRecipe(dir, "crlf", "FROM scratch\r\nLABEL a=b\r\nCOPY Containerfile /x\r\nENV A=1\r")
        let p = try RunningProcess(try IMGBenchBinary.path(), ["build", recipe, "--cache", Self.cache, "--output", dir.file("out"),
                                                             "--images", "container", "--progress", "none", "--format", "json"])
        let r = try #require(p.finish(within: 300))
        #expect(r.status == 0, "exit \(r.status): \(r.output)")
        #expect(try readReport(dir.file("out")).steps.map(\.instruction) == ["LABEL a=b", "COPY Containerfile /x", "ENV A=1"])
    }

    @Test func fromScratchForAVMSaysItNeedsAKernelOnBothBackends() throws {
        let dir = try TempDir("build-scratch-vm", in: Self.scratch)
        let recipe = try writeRecipe(dir, "scratch", "FROM scratch\nLABEL a=b\n")
        for backend in ["loop", "guestfs"] {
            let p = try RunningProcess(try IMGBenchBinary.path(), ["build", recipe, "--cache", Self.cache, "--output", dir.file("out"),
                                                                 "--images", "vm", "--vm-backend", backend, "--progress", "none"])
            let r = try #require(p.finish(within: 300))
            #expect(r.status == 1, "\(backend): exit \(r.status): \(r.output)")
            // libguestfs's own "libguestfs: error:" line and its ls of a missing /boot came before.
            #expect(r.errorLines.count == 1 && r.stderr.hasPrefix("imgbench: error: vm: the image has no kernel in /boot"), "\(backend): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
        }
    }

    @Test func anOutputOnAReadOnlyMountIsOneErrorLineNotAFoundationDump() throws {
        let dir = try TempDir("build-ro", in: Self.scratch)
        let recipe = try writeRecipe(dir, "recipe", "FROM scratch\nLABEL a=b\n")
        let ro = try dir.sub("ro")
        #expect(try runProcess("/bin/mount", ["--bind", ro, ro]).status == 0)
        defer { _ = try? runProcess("/bin/umount", [ro]) }
        #expect(try runProcess("/bin/mount", ["-o", "remount,ro,bind", ro]).status == 0)
        // Inside it (NSCocoaErrorDomain 642 before), and the mount point itself (EBUSY moving it aside).
        for (output, says) in [(ro + "/out", "Read-only file system"), (ro, "Device or resource busy")] {
            let p = try RunningProcess(try IMGBenchBinary.path(), ["build", recipe, "--cache", Self.cache, "--output", output,
                                                                 "--images", "container", "--progress", "none"])
            let r = try #require(p.finish(within: 300))
            #expect(r.status == 1, "exit \(r.status): \(r.output)")
            // One line naming the output (or what was being written into it) and the reason.
            #expect(r.errorLines.count == 1 && r.stderr.hasPrefix("imgbench: error: ") && r.stderr.contains(output)
                && r.stderr.contains(says) && !r.stderr.contains("NSCocoaErrorDomain"), "\(output): \(r.stderr)")
        }
    }

    // MARK: - Helpers

    /// `imgbench build`, given up after 10 minutes (a failed test rather than a hung run); `cache`
    /// and `environment` (added to the runner's) default to the suite's cache and nothing; run in
    /// the working folder `cwd` when given (`cache` then may be relative to it).
    func build(_ recipe: String, output: String, progress: String = "plain", cache: String = Self.cache, in cwd: String? = nil,
               environment: [String: String] = [:], arguments: [String] = [],
               sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
        let p = try RunningProcess(try IMGBenchBinary.path(), ["build", recipe, "--cache", cache, "--output", output, "--progress", progress] + arguments,
                                   environment: environment, cwd: cwd)
        return try #require(p.finish(within: 600), "imgbench build \(recipe) did not finish within 10 minutes", sourceLocation: sourceLocation)
    }

    /// A copy of Recipes/tiny in `dir` whose first RUN step (step 5) has a text new each run
    /// (`what` and a random word), so that no earlier run cached it or the steps after it.
    func tinyWithANewRunStep(_ dir: TempDir, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let recipe = dir.file("tiny")
        try FileManager.default.createDirectory(atPath: recipe, withIntermediateDirectories: true)
        for f in ["Containerfile", "hello.sh"] {
            try FileManager.default.copyItem(atPath: "\(Self.tiny)/\(f)", toPath: "\(recipe)/\(f)")
        }
        let text = try String(contentsOfFile: "\(recipe)/Containerfile", encoding: .utf8)
        let changedLine = "RUN echo \"${GREETING} from a \(what) RUN step \(UUID().uuidString.prefix(8))\" > greeting.txt && chmod 0644 greeting.txt"
        let edited = text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("RUN echo \"${GREETING}") ? Substring(changedLine) : $0 }.joined(separator: "\n")
        try #require(edited != text, "Recipes/tiny no longer has the RUN line this test edits", sourceLocation: sourceLocation)
        try edited.write(toFile: "\(recipe)/Containerfile", atomically: true, encoding: .utf8)
        return recipe
    }

    @discardableResult
    func writeRecipe(_ dir: TempDir, _ name: String, _ containerfile: String) throws -> String {
        let folder = dir.file(name)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try containerfile.write(toFile: "\(folder)/Containerfile", atomically: true, encoding: .utf8)
        return folder
    }

    func readReport(_ out: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Report {
        let data = try #require(FileManager.default.contents(atPath: "\(out)/report.json"), "no \(out)/report.json", sourceLocation: sourceLocation)
        return try JSONDecoder().decode(Report.self, from: data)
    }

    /// No mount, loop device, qemu-storage-daemon or other process refers to the given paths, and
    /// no process carries `marker` (the text of the step's command) on its command line.
    func expectNothingLeft(under paths: [String], marker: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let left = Leftovers.find(under: paths, marker: marker)
        #expect(left.isEmpty, "left behind:\n\(left.joined(separator: "\n"))", sourceLocation: sourceLocation)
    }
}

/// What a build may leave behind, found from /proc and losetup.
enum Leftovers {
    static func find(under folders: [String], marker: String) -> [String] {
        // A folder's own path followed by "/": the cache of another checkout's run
        // (IMGBENCH_TEST_CACHE) may share the prefix of this one's name.
        let paths = folders.map { $0.hasSuffix("/") ? $0 : $0 + "/" }
        var left: [String] = []
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        for line in mounts.split(separator: "\n") where paths.contains(where: { line.contains($0) }) {
            left.append("mount: \(line)")
        }
        if let loops = try? runProcess("/usr/sbin/losetup", ["-a"]) {
            for line in loops.stdout.split(separator: "\n") where paths.contains(where: { line.contains($0) }) {
                left.append("loop device: \(line)")
            }
        }
        let me = getpid()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != me,
                  let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !raw.isEmpty else { continue }
            let cmdline = String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            if cmdline.contains(marker) || (cmdline.contains("qemu-storage-daemon") && paths.contains(where: { cmdline.contains($0) })) {
                left.append("process \(pid): \(cmdline)")
            }
        }
        return left
    }
}

/// A file read from an ext4 image with debugfs (e2fsprogs), without mounting it.
struct DiskFile: CustomStringConvertible {
    var content: Data?
    /// Permission bits in octal, e.g. "755".
    var mode: String?

    var description: String { content.map { "\(String(decoding: $0, as: UTF8.self).debugDescription) mode \(mode ?? "?")" } ?? "missing" }

    static func read(_ raw: String, _ path: String) throws -> DiskFile {
        let stat = try HostTool.run("debugfs", package: "e2fsprogs", ["-R", "stat \(path)", raw])
        guard stat.status == 0, let line = stat.stdout.split(separator: "\n").first(where: { $0.contains("Mode:") }) else {
            return DiskFile(content: nil, mode: nil)
        }
        // "Inode: 1234   Type: regular    Mode:  0755   Flags: 0x80000"
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        let mode = words.firstIndex(of: "Mode:").flatMap { i in i + 1 < words.count ? words[i + 1] : nil }
            .flatMap { Int($0, radix: 8) }.map { String($0 & 0o7777, radix: 8) }
        let cat = try HostTool.run("debugfs", package: "e2fsprogs", ["-R", "cat \(path)", raw])
        return DiskFile(content: cat.status == 0 ? Data(cat.stdout.utf8) : nil, mode: mode)
    }
}

/// The parts of report.json these tests read, decoded on their own (the schema as written, not
/// the library's type).
struct Report: Decodable {
    struct Measure: Decodable {
        var seconds: Double
        var cacheHit: Bool
        var builtSeconds: Double?
        var layerDigest: String?
    }

    struct Phase: Decodable {
        var description: String?
        var key: String
        var container: Measure?
        var vm: Measure?
    }

    struct Step: Decodable {
        var index: Int
        var instruction: String
        var location: String
        var target: String
        var key: String
        var container: Measure?
        var vm: Measure?
        var stage: String?
    }

    struct Totals: Decodable {
        var cacheHits: Int
        var cacheMisses: Int
        var containerBuiltSeconds: Double?
        var vmBuiltSeconds: Double?
        var imageUncompressedBytes: UInt64?
        var vmFlattenedAllocatedBytes: UInt64?
    }

    struct Outputs: Decodable {
        var ociLayout: String?
        var imageDigest: String?
        var bundle: String?
        var vmChain: [String]?
        var vmDisk: String?
    }

    var recipe: String
    var base: Phase
    var steps: [Step]
    var stageSteps: [Step]?
    var finalisation: Phase?
    var totals: Totals
    var outputs: Outputs

    /// Every measured phase and step side, named.
    var measures: [(name: String, measure: Measure)] {
        var all: [(String, Measure)] = []
        if let m = base.container { all.append(("base container", m)) }
        if let m = base.vm { all.append(("base vm", m)) }
        for s in steps {
            if let m = s.container { all.append(("step \(s.index) container", m)) }
            if let m = s.vm { all.append(("step \(s.index) vm", m)) }
        }
        if let m = finalisation?.vm { all.append(("finalisation vm", m)) }
        return all
    }
}
