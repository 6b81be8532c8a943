import Foundation
import Host
import ImageBuild
import RecipePlan
@testable import RuntimeSuite
import Testing
import TestSupport

// The run results against their documented schema (docs/run-schema.json), and how rounds become
// figures and ratios.

private func encoded<T: Encodable>(_ v: T) throws -> Any {
    try JSONSerialization.jsonObject(with: JSONEncoder().encode(v))
}

@Test func runResultsMatchTheirSchema() throws {
    let s = try documentedSchema("run-schema.json")
    let ok = RunReport.SideResult(status: .ok, seconds: 2.1, figures: [Figure(name: "events/s", unit: "events/s", value: 1000, samples: [990, 1000, 1010])],
                                  ratios: ["events/s": 0.98], limits: "pinned to CPU 0")
    var vm = ok
    vm.accelerator = "tcg"
    vm.emulated = true
    var missing = RunReport.SideResult(status: .missingTool, seconds: 0.2, figures: [], limits: "pinned")
    missing.missingTool = "fio"
    missing.error = "fio-randrw: fio is not in the image"
    missing.outputTail = ""
    let report = RunReport(
        manifest: "out/t/handoff.json", recipe: "t", imageDigest: "sha256:" + String(repeating: "0", count: 64), startedAt: "2026-01-01T00:00:00Z",
        host: .init(cpus: 2, cpuModel: "cpu", kernel: "6.1"),
        settings: .init(cpus: 1, cpuList: "0", memoryBytes: 1 << 30, durationSeconds: 2, timeoutSeconds: 300, repeats: 1),
        results: [
            .init(workload: "sysbench-cpu", summary: "s", declared: true, figures: [FigureSpec(name: "events/s", unit: "events/s")],
                  native: ok, container: ok, vm: vm, notes: ["n"]),
            .init(workload: "fio-randrw", summary: "s", declared: false, figures: [FigureSpec(name: "read IOPS", unit: "IOPS")],
                  native: ok, container: missing, vm: nil, notes: []),
        ], provenance: .current(accelerator: "tcg"))
    let json = try #require(try encoded(report) as? [String: Any])
    #expect((json["provenance"] as? [String: Any])?["accelerator"] as? String == "tcg")
    let problems = schemaProblems(json, s, root: s)
    #expect(problems.isEmpty, "\(problems)")
}

@Test func ratiosAreTakenWithinEachRoundAndFiguresAreMedians() {
    func side(_ v: Double, _ status: RunReport.Status = .ok) -> RunReport.SideResult {
        RunReport.SideResult(status: status, seconds: v / 100, figures: [Figure(name: "a", unit: "u", value: v), Figure(name: "b", unit: "u", value: v * 2)], limits: "")
    }
    // One round.
    #expect(RuntimeBench.ratios([side(50)], to: [side(100)]) == ["a": 0.5, "b": 0.5])
    #expect(RuntimeBench.combine([side(50)]) == side(50))
    // Three rounds: the native figure drifts; each round's ratio is 0.5, whatever the medians.
    let native = [side(100), side(300), side(200)]
    let container = [side(50), side(150), side(100)]
    #expect(RuntimeBench.ratios(container, to: native) == ["a": 0.5, "b": 0.5])
    let combined = RuntimeBench.combine(container)
    #expect(combined?.figures.first?.value == 100 && combined?.figures.first?.samples == [50, 150, 100])
    #expect(combined?.figures.last?.value == 200 && combined?.seconds == 1)
    // A failed round: that side's result is the failure, and it has no ratio for that round.
    #expect(RuntimeBench.combine([side(50), side(0, .timedOut)])?.status == .timedOut)
    #expect(RuntimeBench.ratios([side(50)], to: [side(0, .failed)]) == nil, "no ratios without a native figure")
    #expect(RuntimeBench.median([4, 1, 3, 2]) == 2.5)
}

@Test func theSchemaNamesEveryWorkloadAndExperiment() throws {
    let s = try documentedSchema("run-schema.json")
    let workload = ((s["$defs"] as? [String: Any])?["workload"] as? [String: Any])?["properties"] as? [String: Any]
    let names = (workload?["workload"] as? [String: Any])?["enum"] as? [String] ?? []
    #expect(Set(names) == Set(Workload.all.map(\.name) + Experiment.all.map(\.name)), "\(names)")
}
