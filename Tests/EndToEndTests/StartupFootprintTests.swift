import Foundation
import Host
import Testing
import TestSupport

/// Sharma et al.'s (Middleware 2016) start-up, idle footprint and density (issue 19) through
/// `imgbench run` on Recipes/tiny: natively, in the container (runc create and start) and in the
/// VM (QEMU to the agent's first line), in rounds; every instance stopped and nothing left.
///
/// Part of BuildTests (its cache and its turns); the VM runs under TCG here.
extension BuildTests {
    /// Recipes/tiny built into `dir/out` (a cache hit after the first time).
    func buildTiny(_ dir: TempDir) throws -> String {
        let out = dir.file("out")
        let r = try build(Self.tiny, output: out, progress: "none")
        try #require(r.status == 0, "imgbench build: exit \(r.status)\n\(r.stderr.suffix(3000))")
        return out
    }

    /// No idle instance's shell is left sleeping (natively, or in a container that runc lost).
    func expectNoIdleInstanceLeft(sourceLocation: SourceLocation = #_sourceLocation) {
        var left: [String] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard Int32(entry) != nil, let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let cmdline = String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            if cmdline.hasPrefix("sleep 2147483647") { left.append("\(entry): \(cmdline)") }
        }
        #expect(left.isEmpty, "idle instances left: \(left)", sourceLocation: sourceLocation)
    }

    func side(_ json: [String: Any], _ workload: String, _ side: String) -> [String: Any] {
        let results = json["results"] as? [[String: Any]] ?? []
        return results.first { $0["workload"] as? String == workload }?[side] as? [String: Any] ?? [:]
    }

    func figure(_ side: [String: Any], _ name: String) -> (value: Double, samples: [Double])? {
        guard let f = (side["figures"] as? [[String: Any]])?.first(where: { $0["name"] as? String == name }),
              let v = f["value"] as? Double else { return nil }
        return (v, f["samples"] as? [Double] ?? [])
    }

    @Test func startupAndIdleFootprintOfTinyOnEverySideInRounds() throws {
        let dir = try TempDir("run-startup", in: Self.scratch)
        let out = try buildTiny(dir)
        let results = dir.file("startup.json")
        let r = try imgbenchRun(["\(out)/handoff.json", "--workload", "startup,footprint", "--repeat", "3", "--timeout", "120",
                                 "--output", results, "--progress", "none"])
        #expect(r.status == 0, "exit \(r.status): \(r.stderr)")
        #expect(r.stdout.contains("startup: start-up time") && r.stdout.contains("Sharma et al., Middleware 2016"), "\(r.stdout)")
        let json = try readJSON(results)

        // Start-up: three rounds each; the container's create and start make its ready time;
        // a shell's start is the floor, the VM's boot the ceiling.
        var ready: [String: Double] = [:]
        for s in ["native", "container", "vm"] {
            let res = side(json, "startup", s)
            #expect(res["status"] as? String == "ok", "\(s): \(res)")
            let f = try #require(figure(res, "ready"), "\(s): no ready figure: \(res)")
            #expect(f.value > 0 && f.samples.count == 3, "\(s): \(f)")
            ready[s] = f.value
        }
        let container = side(json, "startup", "container")
        let create = try #require(figure(container, "create")), start = try #require(figure(container, "start"))
        #expect(create.samples.count == 3 && start.samples.count == 3)
        #expect(abs(create.value + start.value - ready["container"]!) < ready["container"]! * 0.5, "create \(create.value) + start \(start.value) vs ready \(ready["container"]!)")
        #expect(figure(side(json, "startup", "vm"), "create") == nil, "the VM has no create step")
        #expect(ready["native"]! < ready["container"]! && ready["container"]! < ready["vm"]!, "\(ready)")

        // Footprint: PSS of the container's processes well below QEMU's; the guest's own view.
        var pss: [String: Double] = [:]
        for s in ["native", "container", "vm"] {
            let res = side(json, "footprint", s)
            #expect(res["status"] as? String == "ok", "\(s): \(res)")
            let p = try #require(figure(res, "PSS"), "\(s): \(res)"), rss = try #require(figure(res, "RSS"))
            #expect(p.value > 0 && rss.value >= p.value && p.samples.count == 3, "\(s): PSS \(p) RSS \(rss)")
            pss[s] = p.value
        }
        #expect(pss["container"]! < 16 && pss["vm"]! > 4 * pss["container"]!, "MiB: \(pss)")
        let guest = try #require(figure(side(json, "footprint", "vm"), "guest used"))
        #expect(guest.value > 1 && guest.value < 1024, "the guest's MemTotal - MemAvailable, MiB: \(guest.value)")
        #expect(side(json, "footprint", "vm")["emulated"] as? Bool != nil)
        try expectNoRunLeft(out)
        expectNoIdleInstanceLeft()

        // The report charts both in their own units.
        let rendered = try imgbench("report", results)
        #expect(rendered.status == 0, "\(rendered.stderr)")
        #expect(rendered.stdout.contains("## Start-up time") && rendered.stdout.contains("## Idle footprint"), "\(rendered.stdout)")
        #expect(rendered.stdout.contains("| tiny: ready |"), "\(rendered.stdout)")
        try expectPageRendersInChromium(results: [results, "\(out)/report.json"], in: dir)
    }

    /// A disk that boots on its own: the VM's start-up also to the login prompt and to its
    /// EXPOSEd port answering, through imgbench boot's firmware boot (SeaBIOS).
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/bin/busybox"), "needs busybox-static (scripts/install-deps.sh)"))
    func startupOfADiskThatBootsOnItsOwnReachesItsService() throws {
        let dir = try TempDir("run-startup-firmware", in: Self.scratch)
        let out = dir.file("out")
        let b = try build(try firmwareRecipe(dir), output: out, progress: "none")
        try #require(b.status == 0, "imgbench build: exit \(b.status)\n\(b.stderr.suffix(3000))")
        let results = dir.file("startup.json")
        let r = try imgbenchRun(["\(out)/handoff.json", "--workload", "startup", "--on", "vm", "--timeout", "240",
                                 "--output", results, "--progress", "none"])
        #expect(r.status == 0, "exit \(r.status): \(r.stderr)")
        let vm = side(try readJSON(results), "startup", "vm")
        #expect(vm["status"] as? String == "ok", "\(vm)")
        let ready = try #require(figure(vm, "ready"), "\(vm)")
        let login = try #require(figure(vm, "firmware boot: login"), "\(vm)")
        let service = try #require(figure(vm, "firmware boot: service"), "\(vm)")
        #expect(ready.value > 0 && login.value > ready.value && service.value >= login.value,
                "direct boot to the agent \(ready.value) s, firmware to login \(login.value) s, to the port \(service.value) s")
        try expectNoRunLeft(out)
    }

    @Test func densityCountsIdleInstancesUpToItsCapAndLeavesNothing() throws {
        let dir = try TempDir("run-density", in: Self.scratch)
        let out = try buildTiny(dir)
        let results = dir.file("density.json")
        // A drop of 0.95 (one more instance twenty times slower) stops nothing here: the cap does.
        let r = try imgbenchRun(["\(out)/handoff.json", "--workload", "density", "--density-max", "2", "--density-drop", "0.95",
                                 "--density-memory", "4G", "--timeout", "120", "--output", results, "--progress", "none"])
        #expect(r.status == 0, "exit \(r.status): \(r.stderr)")
        let json = try readJSON(results)
        #expect(side(json, "density", "native").isEmpty, "natively there is no instance to count")
        for s in ["container", "vm"] {
            let res = side(json, "density", s)
            #expect(res["status"] as? String == "ok", "\(s): \(res)")
            #expect(figure(res, "instances")?.value == 2, "\(s): \(res)")
            #expect((figure(res, "PSS per instance")?.value ?? 0) > 0, "\(s): \(res)")
            #expect((res["limits"] as? String ?? "").contains("the cap of 2 instances"), "\(s): \(res)")
        }
        try expectNoRunLeft(out)
        expectNoIdleInstanceLeft()

        // A budget smaller than one instance: none fits.
        let small = try imgbenchRun(["\(out)/handoff.json", "--workload", "density", "--on", "container", "--density-memory", "1K",
                                     "--output", results, "--progress", "none"])
        #expect(small.status == 0, "exit \(small.status): \(small.stderr)")
        #expect(figure(side(try readJSON(results), "density", "container"), "instances")?.value == 0)
        try expectNoRunLeft(out)
        expectNoIdleInstanceLeft()
    }

    @Test func ctrlCDuringDensityStopsEveryInstance() throws {
        let dir = try TempDir("run-density-int", in: Self.scratch)
        let out = try buildTiny(dir)
        let p = try RunningProcess(try IMGBenchBinary.path(), ["run", "\(out)/handoff.json", "--workload", "density", "--on", "container,vm",
                                                               "--density-max", "3", "--density-drop", "0.95", "--progress", "plain"])
        // Interrupted once the VM side's first instance is up (the containers have been deleted
        // by then; the VM's QEMU is running).
        let running = p.wait(upTo: 120) { _, err in err.contains("density: vm instance 2") }
        kill(p.pid, SIGINT)
        let r = p.finish(within: 60)
        try #require(running, "the VM side never started its second instance: \(r?.stderr ?? "")")
        let result = try #require(r, "imgbench run did not exit within 60 s of SIGINT")
        #expect(result.status == 128 + SIGINT, "exit \(result.status): \(result.stderr)")
        try expectNoRunLeft(out)
        expectNoIdleInstanceLeft()
    }
}
