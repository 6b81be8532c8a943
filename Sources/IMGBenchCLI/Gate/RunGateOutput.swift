import Foundation
import Gate

/// The performance gate as a table: every figure judged, then one line per failure and per
/// inconclusive figure.
enum RunGateTable {
    static func render(_ r: RunGateResult) -> String {
        var t = TextTable(header: ["workload", "side", "figure", "baseline", "now", "worse", "95% interval", "rounds", "cv %", "tolerance", "verdict"])
        for c in r.checks {
            let cv = [c.baselineCV, c.currentCV].map { $0.map { String(format: "%.1f", $0) } ?? "-" }.joined(separator: "/")
            t.rows.append([c.workload, c.side.rawValue, "\(c.figure) (\(c.higherIsBetter ? "higher" : "lower") is better)",
                           ReportBook.Table.significant(c.baseline), c.current.map(ReportBook.Table.significant) ?? "-",
                           c.worsePercent.map { String(format: "%+.1f%%", $0) } ?? "-",
                           c.interval.map { String(format: "[%+.1f%%, %+.1f%%]", $0[0], $0[1]) } ?? "-",
                           "\(c.baselineRounds)/\(c.currentRounds)", cv, c.tolerance.percent.map { String(format: "%.1f%%", $0) } ?? "-",
                           c.verdict.rawValue.uppercased()])
        }
        var lines = [t.render(), ""]
        let failed = r.failures, unsure = r.inconclusive
        let verdict = !failed.isEmpty ? "\(failed.count) worse" : !unsure.isEmpty ? "inconclusive" : "within budget"
        lines.append("\(r.recipe): \(r.checks.count) figures checked against \(r.baseline): \(verdict)"
                     + (unsure.isEmpty ? "" : " (\(unsure.count) inconclusive: not passed)"))
        for c in failed { lines.append("worse: \(r.recipe): \(c.message)") }
        for c in unsure { lines.append("inconclusive: \(r.recipe): \(c.message)") }
        return lines.joined(separator: "\n")
    }
}

/// The performance gate as JUnit XML: a test case per figure; a regression or a lost figure is a
/// failure, an inconclusive one is skipped with the reason (CI shows it, and does not count it
/// as passed).
enum RunGateJUnit {
    static func render(_ r: RunGateResult) -> String {
        let e = GateJUnit.escape
        var cases = ""
        for c in r.checks {
            cases += "    <testcase classname=\"\(e("imgbench.\(r.recipe).\(c.workload).\(c.side.rawValue)"))\" name=\"\(e(c.figure))\""
            let message = e("\(r.recipe): \(c.message)")
            switch c.verdict {
            case .pass: cases += "/>\n"
            case .regression, .lost:
                cases += ">\n      <failure type=\"performance-\(c.verdict.rawValue)\" message=\"\(message)\">\(message)</failure>\n    </testcase>\n"
            case .inconclusive: cases += ">\n      <skipped message=\"\(message)\"/>\n    </testcase>\n"
            }
        }
        return GateJUnit.document(suite: "performance gate: \(r.recipe)", tests: r.checks.count, failures: r.failures.count,
                                  skipped: r.inconclusive.count,
                                  properties: [("report", r.report), ("baseline", r.baseline)] + r.warnings.map { ("warning", $0) }, cases: cases)
    }
}
