import ArgumentParser
import Foundation
import Gate
import ImageBuild
import QcowIO
import Registry

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "The size gate: compare a build report with a baseline report against a budget.",
        discussion: """
            Per step and for the whole image: the growth of the OCI compressed and uncompressed \
            size, the VM disk's allocated bytes, and wasted bytes, each against its limit (the \
            budget file; without one, 1 MiB or 1 %, whichever is larger). Steps pair by \
            instruction, so a new or removed step shows as such. \
            Exit status: 0 within budget, 1 over budget, 2 a report, baseline or budget that \
            cannot be read.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, junit }

    @Argument(help: "The report of the build to check (out/NAME/report.json).", transform: absolutePath) var report: String
    @Option(help: "The stored report to compare with: a file, or REGISTRY/REPO:TAG (or @sha256:...), an image whose report imgbench push attached.",
            transform: { try ReportLocation($0) })
    var baseline: ReportLocation
    @Option(help: "The budget file (YAML; see the README).", transform: absolutePath) var budget: String?
    @Option(help: "table, json or junit (JUnit XML), on stdout.") var format: Format = .table
    @Option(help: "Also write the result as JUnit XML to this file.", transform: absolutePath) var junit: String?
    @OptionGroup(title: "Registry (--baseline REGISTRY/REPO:TAG)") var registry: RegistryAccessFlags

    func run() throws {
        let result: GateResult
        do {
            let current = try BuildReport.load(report)
            let base = try baseline.load(registry)
            guard current.recipe == base.recipe else {
                throw GateError.invalid(place: "\(baseline.name): at recipe",
                                        message: "the baseline is of recipe '\(base.recipe)', the report of '\(current.recipe)'")
            }
            let b = try budget.map(Budget.load) ?? Budget()
            result = SizeGate.compare(report: current, baseline: base, budget: b, reportPath: report, baselinePath: baseline.name)
            if let junit {
                do {
                    try Data(GateJUnit.render(result).utf8).write(to: URL(fileURLWithPath: junit))
                } catch {
                    throw GateError.unreadable(path: junit, message: "cannot write the JUnit file: \((error as NSError).localizedDescription)")
                }
            }
        } catch let e where e is DocumentError || e is RegistryError {
            printErr("imgbench: error: \(e)")
            throw ExitCode(2)
        }
        switch format {
        case .table: printOut(GateTable.render(result))
        case .json: printOut(try JSONOutput.string(result))
        case .junit: printOut(GateJUnit.render(result))
        }
        if !result.withinBudget { throw ExitCode(1) }
    }
}

enum GateTable {
    static func render(_ r: GateResult) -> String {
        var t = TextTable(header: ["step", "instruction", "figure", "baseline", "now", "growth", "%", "allowed", "verdict"])
        for c in r.checks {
            let step = c.step.map { p in p.index.map { $0 == 0 ? "base" : "\($0)" } ?? "(\(p.baselineIndex ?? 0))" } ?? "image"
            let status = c.step.map { $0.status == .same ? "" : " [\($0.status.rawValue)]" } ?? ""
            t.rows.append([step, String((c.step?.instruction ?? r.recipe).prefix(40)) + status, c.figure.rawValue,
                           c.baseline.map(ByteSize.format) ?? "-", c.current.map(ByteSize.format) ?? "-",
                           GateFormat.signedBytes(c.growth), c.relativeGrowth.map(GateFormat.signed) ?? "-",
                           ByteSize.format(c.allowedGrowth), c.overBudget ? "OVER" : "ok"])
        }
        var lines = [t.render(), ""]
        // Steps that add no figure (metadata) but are new or removed are still said.
        let checked = Set(r.checks.compactMap { $0.step.map { "\($0.index ?? -1)/\($0.baselineIndex ?? -1)" } })
        for p in r.steps where p.status != .same && !checked.contains("\(p.index ?? -1)/\(p.baselineIndex ?? -1)") {
            let at = p.index.map { "step \($0)" } ?? "step \(p.baselineIndex ?? 0) of the baseline"
            lines.append("\(at) `\(p.instruction)`: \(p.status.rawValue)\(p.baselineInstruction.map { p.status == .changed ? " (was `\($0)`)" : "" } ?? ""); no size figure")
        }
        let breaches = r.breaches
        lines.append("\(r.recipe): \(r.checks.count) figures checked against \(r.baseline): "
                     + (breaches.isEmpty ? "within budget" : "\(breaches.count) over budget"))
        for b in breaches { lines.append("over budget: \(b.message)") }
        return lines.joined(separator: "\n")
    }
}

/// JUnit XML as CI systems read it: one test case per checked figure, a failure per breach.
enum GateJUnit {
    static func render(_ r: GateResult) -> String {
        let failures = r.breaches.count
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuites name=\"imgbench check\" tests=\"\(r.checks.count)\" failures=\"\(failures)\" errors=\"0\">\n"
        x += "  <testsuite name=\"\(escape("size gate: \(r.recipe)"))\" tests=\"\(r.checks.count)\" failures=\"\(failures)\" errors=\"0\" skipped=\"0\">\n"
        x += "    <properties>\n"
        x += "      <property name=\"report\" value=\"\(escape(r.report))\"/>\n"
        x += "      <property name=\"baseline\" value=\"\(escape(r.baseline))\"/>\n"
        x += "    </properties>\n"
        for c in r.checks {
            let where_ = c.step.map { p in p.index.map { $0 == 0 ? "base" : "step-\($0)" } ?? "removed-step-\(p.baselineIndex ?? 0)" } ?? "image"
            let name = "\(c.figure.rawValue): \(c.subject)"
            x += "    <testcase classname=\"\(escape("imgbench.\(r.recipe).\(where_)"))\" name=\"\(escape(name))\""
            if c.overBudget {
                x += ">\n      <failure type=\"size-budget\" message=\"\(escape(c.message))\">\(escape(c.message))</failure>\n    </testcase>\n"
            } else {
                x += "/>\n"
            }
        }
        x += "  </testsuite>\n</testsuites>\n"
        return x
    }

    /// Text as XML 1.0 accepts it in attributes and content: markup characters escaped, line
    /// breaks kept as character references, characters XML cannot hold replaced.
    static func escape(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\n": out += "&#10;"
            case "\r": out += "&#13;"
            case "\t": out += "&#9;"
            default:
                let v = u.value
                let allowed = v >= 0x20 && !(0xD800...0xDFFF).contains(v) && v != 0xFFFE && v != 0xFFFF
                out.unicodeScalars.append(allowed ? u : "\u{FFFD}")
            }
        }
        return out
    }
}
