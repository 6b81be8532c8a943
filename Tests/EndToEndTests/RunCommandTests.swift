import Foundation
import Host
import Testing
import TestSupport

/// The hand-off and `imgbench run` end to end, on `Recipes/tiny`'s settings with sysbench
/// installed: every build writes handoff.json as documented; the container and the VM each give
/// a sysbench figure; a workload the image does not carry fails naming the missing tool; a VM
/// that never answers is stopped after its timeout, reported, and nothing is left running; Ctrl-C
/// deletes the container.
///
/// Needs root (builds, runc) and QEMU; the VM runs under TCG here (KVM aborts on these hosts),
/// so durations are short. Builds share the build tests' cache (the Debian base is made once).
///
/// Part of BuildTests, so that these builds take turns with the others over the shared cache.
extension BuildTests {
    /// Recipes/tiny's directives and base, sysbench installed, sysbench-cpu declared.
    static let sysbenchRecipe = """
        # vm-size=1G
        # vm-kernel=host
        # workloads=sysbench-cpu
        FROM debian:bookworm
        ARG DEBIAN_FRONTEND=noninteractive
        RUN apt-get update && apt-get install -y --no-install-recommends sysbench && rm -rf /var/lib/apt/lists/*

        """

    /// Builds the sysbench recipe into `dir/out` (a cache hit after the first time).
    func buildSysbench(_ dir: TempDir) throws -> String {
        let recipe = try writeRecipe(dir, "sysbench", Self.sysbenchRecipe)
        let out = dir.file("out")
        let r = try build(recipe, output: out, progress: "none")
        try #require(r.status == 0, "imgbench build: exit \(r.status)\n\(r.stderr.suffix(3000))")
        return out
    }

    /// `imgbench run ARGS...`, given up after 5 minutes; in the working folder `cwd` when given.
    func imgbenchRun(_ args: [String], in cwd: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> ProcessResult {
        let p = try RunningProcess(try IMGBenchBinary.path(), ["run"] + args, cwd: cwd)
        return try #require(p.finish(within: 300), "imgbench run \(args) did not finish within 5 minutes", sourceLocation: sourceLocation)
    }

    func readJSON(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let data = try #require(FileManager.default.contents(atPath: path), "no \(path)", sourceLocation: sourceLocation)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], sourceLocation: sourceLocation)
    }

    /// No qemu or other process refers to the build folder, no container of a run is left in
    /// runc's state, and no scratch folder of a run is left beside the manifest.
    func expectNoRunLeft(_ out: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let left = Leftovers.find(under: [out], marker: "\(out)/")
        #expect(left.isEmpty, "left behind:\n\(left.joined(separator: "\n"))", sourceLocation: sourceLocation)
        let containers = try HostTool.run("runc", package: "runc", ["list", "-q"]).stdout
            .split(separator: "\n").filter { $0.hasPrefix("imgbench-run-") }
        #expect(containers.isEmpty, "runc still holds \(containers)", sourceLocation: sourceLocation)
        let scratch = (try? FileManager.default.contentsOfDirectory(atPath: out))?.filter { $0.hasPrefix(".imgbench-run-") } ?? []
        #expect(scratch.isEmpty, "scratch left in \(out): \(scratch)", sourceLocation: sourceLocation)
    }

    @Test func theBuildWritesAHandoffAndTheContainerAndTheVMEachGiveASysbenchFigure() throws {
        let dir = try TempDir("run-sysbench", in: Self.scratch)
        let out = try buildSysbench(dir)

        // handoff.json: every key the schema requires, nothing it does not document, and the
        // paths it names exist.
        let handoff = try readJSON("\(out)/handoff.json")
        let schemaURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/handoff-schema.json")
        let schema = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: schemaURL)) as? [String: Any])
        func check(_ object: [String: Any]?, _ s: [String: Any]?, _ path: String) {
            guard let object, let s else { Issue.record("\(path): missing"); return }
            for k in s["required"] as? [String] ?? [] { #expect(object[k] != nil, "\(path) lacks \(k)") }
            let props = s["properties"] as? [String: Any] ?? [:]
            for k in object.keys { #expect(props[k] != nil, "\(path).\(k) is not in docs/handoff-schema.json") }
        }
        let props = schema["properties"] as? [String: Any]
        check(handoff, schema, "$")
        check(handoff["recipe"] as? [String: Any], props?["recipe"] as? [String: Any], "$.recipe")
        check(handoff["container"] as? [String: Any], props?["container"] as? [String: Any], "$.container")
        let vmSchema = props?["vm"] as? [String: Any]
        check(handoff["vm"] as? [String: Any], vmSchema, "$.vm")
        check((handoff["vm"] as? [String: Any])?["boot"] as? [String: Any],
              (vmSchema?["properties"] as? [String: Any])?["boot"] as? [String: Any], "$.vm.boot")
        #expect(handoff["schemaVersion"] as? Int == 1)
        #expect((handoff["recipe"] as? [String: Any])?["workloads"] as? [String] == ["sysbench-cpu"])
        let report = try readJSON("\(out)/report.json")
        let container = handoff["container"] as? [String: Any] ?? [:]
        #expect(container["imageDigest"] as? String == (report["outputs"] as? [String: Any])?["imageDigest"] as? String)
        let vm = handoff["vm"] as? [String: Any] ?? [:]
        let boot = vm["boot"] as? [String: Any] ?? [:]
        var named = [handoff["report"], container["ociLayout"], container["bundle"], vm["disk"], boot["kernel"], boot["initrd"]].compactMap { $0 as? String }
        named += vm["chain"] as? [String] ?? []
        #expect(named.count >= 8)
        for p in named { #expect(FileManager.default.fileExists(atPath: "\(out)/\(p)"), "handoff.json names \(p), which is not in \(out)") }

        // The run: native, container and VM, one sysbench figure each, ratios to native.
        let config = FileManager.default.contents(atPath: "\(out)/bundle/config.json")
        let results = dir.file("run.json")
        let started = Date()
        let r = try imgbenchRun(["\(out)/handoff.json", "--workload", "sysbench-cpu", "--duration", "2", "--timeout", "150",
                         "--format", "json", "--output", results])
        try #require(r.status == 0, "imgbench run: exit \(r.status)\n\(r.stderr.suffix(3000))")
        let printed = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let written = try readJSON(results)
        #expect(NSDictionary(dictionary: printed).isEqual(to: written), "--output and stdout differ")
        #expect(written["kind"] as? String == "run" && written["schemaVersion"] as? Int == 1)
        let result = try #require((written["results"] as? [[String: Any]])?.first)
        #expect(result["workload"] as? String == "sysbench-cpu" && result["declared"] as? Bool == true)
        for side in ["native", "container", "vm"] {
            let s = result[side] as? [String: Any] ?? [:]
            #expect(s["status"] as? String == "ok", "\(side): \(s)")
            let figure = (s["figures"] as? [[String: Any]])?.first
            #expect(figure?["name"] as? String == "events/s" && (figure?["value"] as? Double ?? 0) > 0, "\(side): \(s)")
            if side != "native" {
                #expect(((s["ratios"] as? [String: Any])?["events/s"] as? Double ?? 0) > 0, "\(side) has no ratio to native: \(s)")
            }
        }
        let vmResult = result["vm"] as? [String: Any] ?? [:]
        let accel = vmResult["accelerator"] as? String
        #expect(accel == "kvm" || accel == "tcg")
        #expect(vmResult["emulated"] as? Bool == (accel == "tcg"))
        if accel == "tcg" {
            #expect((result["notes"] as? [String] ?? []).contains { $0.contains("not comparable to native") })
        }
        #expect(Date().timeIntervalSince(started) < 150)
        #expect(FileManager.default.contents(atPath: "\(out)/bundle/config.json") == config, "the run changed the built bundle")
        try expectNoRunLeft(out)

        // imgbench report puts the run beside the build.
        let rendered = try imgbench("report", results, "\(out)/report.json")
        #expect(rendered.status == 0, "\(rendered.stderr)")
        #expect(rendered.stdout.contains("## Runtime workloads") && rendered.stdout.contains("| sysbench sysbench-cpu: events/s |"), "\(rendered.stdout)")
        #expect(rendered.stdout.contains("## Runtime relative to native") && rendered.stdout.contains("## Build time"), "\(rendered.stdout)")
        try expectPageRendersInChromium(results: [results, "\(out)/report.json"], in: dir)
    }

    /// `imgbench report --html` of real results, rendered by headless Chromium: the DOM after
    /// load has every table and every chart drawn (its bars laid out), and a screenshot is made.
    func expectPageRendersInChromium(results: [String], in dir: TempDir) throws {
        let page = dir.file("results.html"), png = dir.file("results.png")
        let r = try runProcess(try IMGBenchBinary.path(), ["report"] + results + ["--html", page])
        try #require(r.status == 0, "\(r.stderr)")
        let text = try String(contentsOfFile: page, encoding: .utf8)
        let tables = text.components(separatedBy: "<table>").count - 1, charts = text.components(separatedBy: "<svg ").count - 1
        #expect(tables >= 4 && charts == tables - 1, "every table, and a chart for each but the one whose rows have their own units: \(tables) tables, \(charts) charts")
        let chromium = try HostTool.path("chromium", package: "chromium")
        let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(dir.file("chromium"))"]
        let dom = try runProcess(chromium, flags + ["--virtual-time-budget=5000", "--dump-dom", "file://\(page)"])
        try #require(dom.status == 0, "chromium --dump-dom: \(dom.stderr.suffix(2000))")
        #expect(dom.stdout.contains("data-charts-drawn=\"\(charts)\""), "every chart drawn: \(dom.stdout.suffix(800))")
        #expect(dom.stdout.components(separatedBy: "<table>").count - 1 == tables)
        #expect(!dom.stdout.contains("data-bars=\"0\""), "a chart with no visible bar")
        let shot = try runProcess(chromium, flags + ["--window-size=1100,3000", "--screenshot=\(png)", "file://\(page)"])
        #expect(shot.status == 0, "\(shot.stderr.suffix(2000))")
        let bytes = try #require(FileManager.default.contents(atPath: png), "no screenshot")
        #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]) && bytes.count > 20_000, "a PNG of the page: \(bytes.count) bytes")
    }

    @Test func aWorkloadTheImageDoesNotCarryFailsNamingTheMissingTool() throws {
        let dir = try TempDir("run-missing", in: Self.scratch)
        let out = try buildSysbench(dir)
        // In the container (checked before the VM is booted)...
        let results = dir.file("missing.json")
        var r = try imgbenchRun(["\(out)/handoff.json", "--workload", "fio-randrw", "--on", "container,vm", "--output", results, "--progress", "none"])
        #expect(r.status == 1, "exit \(r.status): \(r.output)")
        #expect(r.stderr.contains("fio is not in the image (in the container)"), "\(r.stderr)")
        let result = try #require((try readJSON(results)["results"] as? [[String: Any]])?.first)
        let container = result["container"] as? [String: Any] ?? [:]
        #expect(container["status"] as? String == "missingTool" && container["missingTool"] as? String == "fio", "\(container)")
        #expect(result["vm"] == nil, "the VM was booted after the container showed the tool missing")
        #expect(result["declared"] as? Bool == false)
        // ...and in the VM, through the agent.
        r = try imgbenchRun(["\(out)/handoff.json", "--workload", "fio-randrw", "--on", "vm", "--timeout", "150", "--progress", "none"])
        #expect(r.status == 1, "exit \(r.status): \(r.output)")
        #expect(r.stderr.contains("fio is not in the image (in the VM)"), "\(r.stderr)")
        try expectNoRunLeft(out)
    }

    @Test func aVMThatNeverAnswersIsStoppedAfterItsTimeoutAndNothingIsLeft() throws {
        let dir = try TempDir("run-timeout", in: Self.scratch)
        let out = try buildSysbench(dir)
        // The same images with a root device that does not exist: the initramfs waits for it and
        // the agent never starts.
        var handoff = try readJSON("\(out)/handoff.json")
        var vm = try #require(handoff["vm"] as? [String: Any])
        var boot = try #require(vm["boot"] as? [String: Any])
        boot["commandLine"] = "root=/dev/vdz rw console=ttyS0"
        vm["boot"] = boot
        handoff["vm"] = vm
        try JSONSerialization.data(withJSONObject: handoff).write(to: URL(fileURLWithPath: "\(out)/never.json"))
        let results = dir.file("timeout.json")
        let started = Date()
        let r = try imgbenchRun(["\(out)/never.json", "--workload", "sysbench-cpu", "--on", "vm", "--timeout", "20", "--output", results, "--progress", "none"])
        let took = Date().timeIntervalSince(started)
        #expect(r.status == 1, "exit \(r.status): \(r.output)")
        #expect(r.stderr.contains("sysbench-cpu in the VM: no answer within 20 s: stopped"), "\(r.stderr)")
        #expect(took < 45, "stopping took \(took) s")
        let vmResult = (try readJSON(results)["results"] as? [[String: Any]])?.first?["vm"] as? [String: Any] ?? [:]
        #expect(vmResult["status"] as? String == "timedOut", "\(vmResult)")
        #expect(!(vmResult["outputTail"] as? String ?? "").isEmpty, "the console's last lines are reported")
        try expectNoRunLeft(out)
    }

    @Test func ctrlCDuringAContainerRunDeletesTheContainer() throws {
        let dir = try TempDir("run-int", in: Self.scratch)
        let out = try buildSysbench(dir)
        let p = try RunningProcess(try IMGBenchBinary.path(), ["run", "\(out)/handoff.json", "--workload", "sysbench-cpu",
                                                               "--on", "container", "--duration", "60", "--progress", "plain"])
        // Running once runc lists a container whose bundle is the run's copy beside the manifest.
        let running = p.wait(upTo: 60) { _, _ in
            ((try? HostTool.run("runc", package: "runc", ["list"]).stdout) ?? "").contains("\(out)/.imgbench-run-")
        }
        kill(p.pid, SIGINT)
        let r = p.finish(within: 30)
        try #require(running, "the container never ran: \(r?.stderr ?? "")")
        let result = try #require(r, "imgbench run did not exit within 30 s of SIGINT")
        #expect(result.status == 128 + SIGINT, "exit \(result.status): \(result.stderr)")
        #expect(result.stderr.contains("delete container imgbench-run-"), "\(result.stderr)")
        try expectNoRunLeft(out)
    }

    @Test func anUnknownWorkloadIsARecipeErrorAtItsColumn() throws {
        let dir = try TempDir("run-bad", in: Self.scratch)
        let recipe = try writeRecipe(dir, "bad", "# vm-size=1G\n# workloads=sysbench-cpu,frobnicate\nFROM debian:bookworm\n")
        let r = try build(recipe, output: dir.file("out"), progress: "none")
        #expect(r.status == 2, "exit \(r.status): \(r.output)")
        #expect(r.stderr.hasPrefix("imgbench: error: \(recipe)/Containerfile:2:26: unknown workload 'frobnicate'"), "\(r.stderr)")
    }
}

extension BuildTests {
    /// Felter et al.'s network figures (issue 19): nuttcp's bandwidth and qperf's TCP and UDP
    /// latency, each server in the image and its client on the host, natively, in the container
    /// and in the VM (its data port forwarded by QEMU, over UDP too).
    @Test func nuttcpAndQperfGiveBandwidthAndLatencyOnEverySide() throws {
        let dir = try TempDir("run-network", in: Self.scratch)
        let recipe = try writeRecipe(dir, "network", """
            # vm-size=1G
            # vm-kernel=host
            # workloads=nuttcp,qperf
            FROM debian:bookworm
            ARG DEBIAN_FRONTEND=noninteractive
            RUN apt-get update && apt-get install -y --no-install-recommends nuttcp qperf && rm -rf /var/lib/apt/lists/*

            """)
        let out = dir.file("out")
        let b = try build(recipe, output: out, progress: "none")
        try #require(b.status == 0, "imgbench build: exit \(b.status)\n\(b.stderr.suffix(3000))")
        let results = dir.file("network.json")
        let r = try imgbenchRun(["\(out)/handoff.json", "--workload", "nuttcp,qperf", "--duration", "2", "--output", results, "--progress", "none"])
        #expect(r.status == 0, "\(r.output.suffix(3000))")
        let json = try readJSON(results)
        let byName = Dictionary(uniqueKeysWithValues: (json["results"] as? [[String: Any]] ?? []).map { ($0["workload"] as? String ?? "", $0) })
        for (workload, figures) in [("nuttcp", ["received"]), ("qperf", ["TCP latency", "UDP latency"])] {
            let w = try #require(byName[workload], "\(workload) missing: \(byName.keys)")
            for side in ["native", "container", "vm"] {
                let s = try #require(w[side] as? [String: Any], "\(workload) \(side)")
                #expect(s["status"] as? String == "ok", "\(workload) \(side): \(s["error"] ?? "") \(s["outputTail"] ?? "")")
                let values = Dictionary(uniqueKeysWithValues: (s["figures"] as? [[String: Any]] ?? []).map { ($0["name"] as? String ?? "", $0["value"] as? Double ?? 0) })
                for f in figures { #expect((values[f] ?? 0) > 0, "\(workload) \(side): \(f) = \(values[f] ?? 0)") }
            }
        }
        try expectNoRunLeft(out)

        // The container on a bridge with NAT, as Docker's default network: the same figures, the
        // limits say so, and no namespace, interface or nat rule is left.
        let before = BridgeNetwork.leftovers()
        let bridged = dir.file("bridge.json")
        let b2 = try imgbenchRun(["\(out)/handoff.json", "--workload", "nuttcp,qperf", "--on", "container", "--container-network", "bridge",
                                  "--duration", "2", "--output", bridged, "--progress", "none"])
        #expect(b2.status == 0, "\(b2.output.suffix(3000))")
        for w in try readJSON(bridged)["results"] as? [[String: Any]] ?? [] {
            let c = w["container"] as? [String: Any] ?? [:]
            #expect(c["status"] as? String == "ok" && (c["limits"] as? String ?? "").contains("bridge with NAT"), "\(w["workload"] ?? ""): \(c)")
        }
        #expect(BridgeNetwork.leftovers() == before, "left: \(BridgeNetwork.leftovers())")
    }
}

extension BuildTests {
    /// Felter et al.'s MySQL with its data folder on the container's copy-on-write root beside a
    /// bind-mounted volume (issue 19): both give figures, the root one on an overlay of the
    /// rootfs that is unmounted and removed afterwards.
    @Test func mariadbOnTheCopyOnWriteRootAndOnAVolumeBothGiveFigures() throws {
        let dir = try TempDir("run-oltp-root", in: Self.scratch)
        let recipe = try writeRecipe(dir, "oltp", """
            # workloads=sysbench-oltp,sysbench-oltp-root
            FROM debian:bookworm
            ARG DEBIAN_FRONTEND=noninteractive
            RUN apt-get update && apt-get install -y --no-install-recommends mariadb-server && rm -rf /var/lib/apt/lists/*

            """)
        let out = dir.file("out")
        let b = try build(recipe, output: out, progress: "none", arguments: ["--images", "container"])
        try #require(b.status == 0, "imgbench build: exit \(b.status)\n\(b.stderr.suffix(3000))")
        let results = dir.file("oltp.json")
        let r = try imgbenchRun(["\(out)/handoff.json", "--workload", "declared", "--on", "native,container", "--duration", "2",
                                 "--output", results, "--progress", "none"])
        #expect(r.status == 0, "\(r.output.suffix(3000))")
        let byName = Dictionary(uniqueKeysWithValues: (try readJSON(results)["results"] as? [[String: Any]] ?? []).map { ($0["workload"] as? String ?? "", $0) })
        for (name, root) in [("sysbench-oltp", "read-only"), ("sysbench-oltp-root", "copy-on-write")] {
            let c = try #require(byName[name]?["container"] as? [String: Any], "\(name): \(byName.keys)")
            #expect(c["status"] as? String == "ok" && (c["limits"] as? String ?? "").contains(root), "\(name): \(c)")
            let tps = (c["figures"] as? [[String: Any]])?.first { $0["name"] as? String == "transactions/s" }?["value"] as? Double
            #expect((tps ?? 0) > 0, "\(name): \(c)")
        }
        try expectNoRunLeft(out)
    }
}
