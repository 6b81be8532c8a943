import Foundation
import Host
import RuntimeSuite

/// The performance gate's verdict on one figure.
public enum RunVerdict: String, Codable, Sendable {
    /// Within the tolerance (or better).
    case pass
    /// Worse beyond the tolerance, and beyond the rounds' noise.
    case regression
    /// The gate cannot tell: too few rounds, rounds spread too widely, or a change beyond the
    /// tolerance that the rounds' noise could explain. Not a pass.
    case inconclusive
    /// The baseline has the figure and this run does not (the side failed, timed out or lacked a tool).
    case lost
}

/// One figure of one workload on one side, this run's median against the baseline's.
public struct RunCheck: Codable, Equatable, Sendable {
    public var workload: String
    public var side: Side
    public var figure: String
    public var unit: String
    public var higherIsBetter: Bool
    /// The medians over the rounds; `current` is nil when this run lost the figure.
    public var baseline: Double
    public var current: Double?
    public var baselineRounds: Int
    public var currentRounds: Int
    /// Each side's rounds: standard deviation over mean, percent.
    public var baselineCV: Double?
    public var currentCV: Double?
    /// How much worse the median got, percent of the baseline's (negative: better).
    public var worsePercent: Double?
    /// The 95% bootstrap interval of `worsePercent` from the rounds, [low, high].
    public var interval: [Double]?
    public var tolerance: RunTolerance
    public var verdict: RunVerdict
    /// Why the verdict, in words.
    public var reason: String

    /// "sysbench-cpu, container, events/s: 30.0% worse (1000 -> 700 events/s); ..."
    public var message: String {
        let values = "\(ReportBook.Table.significant(baseline)) -> \(current.map(ReportBook.Table.significant) ?? "none") \(unit)"
        return "\(workload), \(side.rawValue), \(figure): \(values): \(reason)"
    }
}

extension GateFormat {
    /// "12.3%".
    static func percent(_ v: Double) -> String { String(format: "%.1f%%", v) }
}

/// The performance gate's result: every figure both runs share, judged.
public struct RunGateResult: Codable, Equatable, Sendable {
    public var recipe: String
    public var report: String
    public var baseline: String
    public var checks: [RunCheck]
    public var warnings: [String] = []

    public var failures: [RunCheck] { checks.filter { $0.verdict == .regression || $0.verdict == .lost } }
    public var inconclusive: [RunCheck] { checks.filter { $0.verdict == .inconclusive } }
}

/// `imgbench check RUN.json --baseline BASE.json`: runtime figures gated with statistics. A figure
/// fails when its median got worse than the tolerance allows *and* the 95% bootstrap interval of
/// the change (resampling both sides' rounds) lies wholly on the worse side, so a difference
/// the rounds' noise explains does not fail; as Kata Containers' checkmetrics, rounds spread
/// wider than a bound on the coefficient of variation are not judged, and neither are too few
/// rounds: both are inconclusive, never passed.
public enum RunGate {
    public static func compare(report: RunReport, baseline: RunReport, budget: RunBudget,
                               reportPath: String = "run.json", baselinePath: String = "baseline.json") -> RunGateResult {
        var checks: [RunCheck] = []
        for old in baseline.results {
            let now = report.results.first { $0.workload == old.workload }
            for (side, oldSide) in old.sides where oldSide.status == .ok {
                let newSide = now?.sides.first { $0.0 == side }?.1
                for f in oldSide.figures {
                    let spec = old.figures.first { $0.name == f.name }
                    let tolerance = budget.tolerance(recipe: baseline.recipe, workload: old.workload, figure: f.name)
                    checks.append(judge(workload: old.workload, side: side, old: f, new: newSide,
                                        higherIsBetter: spec?.higherIsBetter ?? true, tolerance: tolerance))
                }
            }
        }
        var result = RunGateResult(recipe: report.recipe, report: reportPath, baseline: baselinePath, checks: checks)
        result.warnings = ProvenanceWarnings.compare(report.provenance, baseline.provenance, reportPath: reportPath, baselinePath: baselinePath)
        return result
    }

    /// One figure: lost, inconclusive (rounds, spread, noise), a regression or a pass.
    static func judge(workload: String, side: Side, old: Figure, new: RunReport.SideResult?, higherIsBetter: Bool,
                      tolerance t: RunTolerance) -> RunCheck {
        let a = old.samples ?? [old.value]
        var c = RunCheck(workload: workload, side: side, figure: old.name, unit: old.unit, higherIsBetter: higherIsBetter,
                         baseline: old.value, current: nil, baselineRounds: a.count, currentRounds: 0,
                         baselineCV: Statistics.coefficientOfVariation(a).map { $0 * 100 }, tolerance: t, verdict: .lost, reason: "")
        guard let new, new.status == .ok, let f = new.figures.first(where: { $0.name == old.name }) else {
            c.reason = "lost: the baseline has it, this run does not (\(new.map { "\($0.status.rawValue)\($0.error.map { ": \($0)" } ?? "")" } ?? "not run"))"
            return c
        }
        let b = f.samples ?? [f.value]
        c.current = f.value
        c.currentRounds = b.count
        c.currentCV = Statistics.coefficientOfVariation(b).map { $0 * 100 }
        guard old.value != 0 else {
            c.verdict = .inconclusive
            c.reason = "inconclusive: the baseline's median is 0, no relative change"
            return c
        }
        let worse = { (x: [Double], y: [Double]) -> Double in
            let m0 = Statistics.median(x) ?? 0, m1 = Statistics.median(y) ?? 0
            return (higherIsBetter ? m0 - m1 : m1 - m0) / abs(m0) * 100
        }
        c.worsePercent = worse(a, b)
        if let i = Statistics.bootstrapInterval(a, b, statistic: worse), i.lowerBound.isFinite, i.upperBound.isFinite {
            c.interval = [i.lowerBound, i.upperBound]
        }
        (c.verdict, c.reason) = verdict(c, tolerance: t)
        return c
    }

    static func verdict(_ c: RunCheck, tolerance t: RunTolerance) -> (RunVerdict, String) {
        let rounds = t.rounds ?? 1, maxCV = t.cv ?? .infinity, limit = t.percent ?? 0
        let worse = c.worsePercent ?? 0
        let change = worse >= 0 ? "\(GateFormat.percent(worse)) worse" : "\(GateFormat.percent(-worse)) better"
        let interval = c.interval.map { "95% interval [\(GateFormat.percent($0[0])), \(GateFormat.percent($0[1]))] worse" } ?? "no interval"
        if min(c.baselineRounds, c.currentRounds) < rounds {
            return (.inconclusive, "inconclusive: \(c.baselineRounds) rounds in the baseline, \(c.currentRounds) now; the budget asks for \(rounds) (--repeat)")
        }
        let cv = max(c.baselineCV ?? 0, c.currentCV ?? 0)
        if cv > maxCV {
            return (.inconclusive, "inconclusive: \(change), but the rounds spread \(GateFormat.percent(cv)) (coefficient of variation), more than the \(GateFormat.percent(maxCV)) allowed")
        }
        if worse <= limit { return (.pass, "\(change); tolerance \(GateFormat.percent(limit))") }
        if let i = c.interval, i[0] > 0 {
            return (.regression, "\(change), beyond the tolerance of \(GateFormat.percent(limit)) and beyond the rounds' noise (\(interval))")
        }
        return (.inconclusive, "inconclusive: \(change), beyond the tolerance of \(GateFormat.percent(limit)), but within the rounds' noise (\(interval))")
    }
}
