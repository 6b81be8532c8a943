import Foundation
@testable import Gate
import Host
import ImageBuild
@testable import RuntimeSuite
import Testing

// The performance gate on synthetic run results: a median that moved beyond the tolerance and
// beyond the rounds' noise fails; wide or too few rounds are inconclusive; unchanged passes.

/// Run results of recipe t: sysbench-cpu (events/s, higher is better) in the container, one
/// figure per round.
private func run(_ rounds: [Double], status: RunReport.Status = .ok) -> RunReport {
    let figure = Figure(name: "events/s", unit: "events/s", value: Statistics.median(rounds) ?? 0, samples: rounds.count > 1 ? rounds : nil)
    let side = RunReport.SideResult(status: status, seconds: 10, figures: status == .ok ? [figure] : [], limits: "pinned to CPU 0")
    return RunReport(manifest: "out/t/handoff.json", recipe: "t", startedAt: "2026-01-01T00:00:00Z",
                     host: .init(cpus: 2, cpuModel: "cpu", kernel: "6.1"),
                     settings: .init(cpus: 1, cpuList: "0", memoryBytes: 1 << 30, durationSeconds: 10, timeoutSeconds: 300, repeats: rounds.count),
                     results: [.init(workload: "sysbench-cpu", summary: "s", declared: true, figures: [FigureSpec(name: "events/s", unit: "events/s")],
                                     native: nil, container: side, vm: nil, notes: [])])
}

private let tight: [Double] = [1000, 1004, 996, 1002, 998]

private func verdict(_ now: [Double], _ base: [Double] = tight, budget: RunBudget = RunBudget()) throws -> RunCheck {
    try #require(RunGate.compare(report: run(now), baseline: run(base), budget: budget).checks.first)
}

@Test func aFigureThirtyPercentWorseWithTightRoundsFails() throws {
    let c = try verdict(tight.map { $0 * 0.7 })
    #expect(c.verdict == .regression, "\(c.message)")
    #expect(abs((c.worsePercent ?? 0) - 30) < 0.01)
    let i = try #require(c.interval)
    #expect(i[0] > 25 && i[1] < 35, "\(i)")
    #expect(c.message.contains("30.0% worse") && c.message.contains("beyond the rounds' noise"), "\(c.message)")
}

@Test func aFigureWithWideRoundsIsInconclusiveNotPassed() throws {
    let wide: [Double] = [400, 1300, 700, 1000, 600]
    let c = try verdict(wide)
    #expect(c.verdict == .inconclusive && (c.currentCV ?? 0) > 10, "\(c.message)")
    #expect(c.message.contains("coefficient of variation"), "\(c.message)")
    let r = RunGate.compare(report: run(wide), baseline: run(tight), budget: RunBudget())
    #expect(r.failures.isEmpty && r.inconclusive.count == 1)
}

@Test func anUnchangedFigurePassesAndABetterOneToo() throws {
    #expect(try verdict([1001, 999, 1003, 997, 1000]).verdict == .pass)
    #expect(try verdict(tight.map { $0 * 1.3 }).verdict == .pass)
    // Lower is better (a latency): the same 30% drop is then an improvement, a 30% rise a regression.
    var base = run(tight), now = run(tight.map { $0 * 1.3 })
    base.results[0].figures[0].higherIsBetter = false
    now.results[0].figures[0].higherIsBetter = false
    #expect(RunGate.compare(report: now, baseline: base, budget: RunBudget()).checks.first?.verdict == .regression)
}

@Test func tooFewRoundsOrAMoveWithinTheNoiseAreInconclusive() throws {
    // One round a side: no spread to judge by, whatever the change.
    let c = try verdict([700], [1000])
    #expect(c.verdict == .inconclusive && c.reason.contains("1 rounds in the baseline"), "\(c.reason)")
    // 8% worse by the medians, rounds within the spread bound, but the interval reaches no change.
    let noisy: [Double] = [1000, 1150, 880, 1100, 920]
    let moved: [Double] = [920, 1080, 800, 1040, 850]
    let n = try verdict(moved, noisy, budget: try RunBudget.parse("default: {cv: 20%}\n", file: "b.yaml"))
    #expect(n.verdict == .inconclusive && n.reason.contains("within the rounds' noise"), "\(n.reason)")
}

@Test func aFigureTheRunLostFails() throws {
    let r = RunGate.compare(report: run([], status: .timedOut), baseline: run(tight), budget: RunBudget())
    #expect(r.failures.map(\.verdict) == [.lost], "\(r.checks)")
    #expect(r.failures.first?.message.contains("timedOut") == true)
}

@Test func runBudgetsResolveAndNameTheirUnknownWorkloads() throws {
    let text = """
        default: {percent: 10%, rounds: 5}
        recipes:
          t:
            cv: 20%
            workloads:
              sysbench-cpu:
                percent: 2%
                figures:
                  "events/s": {percent: 40%}
              fio-randrw: {percent: 3%}
        """
    let b = try RunBudget.parse(text, file: "budget.yaml")
    #expect(b.tolerance(recipe: "t", workload: "sysbench-cpu", figure: "events/s") == RunTolerance(percent: 40, cv: 20, rounds: 5))
    #expect(b.tolerance(recipe: "t", workload: "sysbench-cpu", figure: "other") == RunTolerance(percent: 2, cv: 20, rounds: 5))
    #expect(b.tolerance(recipe: "u", workload: "x", figure: "y") == RunTolerance(percent: 10, cv: 10, rounds: 5))
    // A 30% drop passes under a 40% tolerance.
    #expect(try verdict(tight.map { $0 * 0.7 }, budget: b).verdict == .pass)
    #expect { try b.checkWorkloadKeys(recipe: "t", workloads: ["sysbench-cpu"]) } throws: { e in
        "\(e)".hasPrefix("budget.yaml:10:7: the workload key \"fio-randrw\"")
    }
    #expect { try RunBudget.parse("default: {cv: lots}\n", file: "b.yaml") } throws: { "\($0)".hasPrefix("b.yaml:1:15: cv: 'lots' is not a percentage") }
    #expect { try RunBudget.parse("default: {bytes: 1M}\n", file: "b.yaml") } throws: { "\($0)".contains("unknown key 'bytes'") }
}

@Test func runResultsFromAnotherHostOrVersionAreWarnedAbout() throws {
    var base = run(tight), now = run(tight)
    var p = Provenance.current(accelerator: "tcg")
    base.provenance = p
    p.kernel = "6.1.0-other"
    p.madeAt = "2030-01-01T00:00:00Z"
    now.provenance = p
    let w = RunGate.compare(report: now, baseline: base, budget: RunBudget(), reportPath: "now.json", baselinePath: "base.json").warnings
    #expect(w.count == 1 && w[0].contains("different hosts or versions") && w[0].contains("kernel: 6.1.0-other vs"), "\(w)")
    #expect(!w[0].contains("2030"), "the date alone is no difference")
    now.provenance = base.provenance
    #expect(RunGate.compare(report: now, baseline: base, budget: RunBudget()).warnings.isEmpty)
    now.provenance = nil
    #expect(RunGate.compare(report: now, baseline: base, budget: RunBudget()).warnings.first?.contains("does not record where it was made") == true)
}
