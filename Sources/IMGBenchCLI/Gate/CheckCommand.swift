import ArgumentParser
import Foundation
import Gate
import Host
import ImageBuild
import Publish
import QcowIO
import Registry
import RuntimeSuite

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "The gate: a build report against a baseline's sizes, or imgbench run results against a baseline's performance.",
        discussion: """
            Build reports (report.json): per step and for the whole image, the growth of the OCI \
            compressed and uncompressed size, the VM disk's allocated bytes, and wasted bytes, \
            each against its limit (the budget file; without one, 1 MiB or 1 %, whichever is \
            larger). Steps pair by instruction, so a new or removed step shows as such. A budget \
            key that names no step is an error. \
            Run results (imgbench run --output; the workloads of Felter et al., IBM 2014): each \
            figure's median against the baseline's; a figure fails when it got worse than the \
            tolerance (5 % without a budget) and the 95 % bootstrap interval of the change lies \
            wholly on the worse side; too few rounds (3), rounds spread wider than the bound on \
            the coefficient of variation (10 %), or a change the noise explains are inconclusive. \
            Both warn when the two files were made on different hosts or versions. \
            Exit status: 0 within budget, 1 over budget (or a regression, or a lost figure), \
            2 a report, baseline or budget that cannot be read, 3 inconclusive (run results only).
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, junit }

    @Argument(help: "The report of the build to check (out/NAME/report.json), or imgbench run results.", transform: absolutePath) var report: String
    @Option(help: "The stored report (or run results) to compare with: a file, or for a report REGISTRY/REPO:TAG (or @sha256:...), an image whose report imgbench push attached.",
            transform: { try ReportLocation($0) })
    var baseline: ReportLocation
    @Option(help: "The budget file (YAML; see the README).", transform: absolutePath) var budget: String?
    @Option(help: "table, json or junit (JUnit XML), on stdout.") var format: Format = .table
    @Option(help: "Also write the result as JUnit XML to this file.", transform: absolutePath) var junit: String?
    @OptionGroup(title: "Registry (--baseline REGISTRY/REPO:TAG)") var registry: RegistryAccessFlags

    func run() throws {
        do {
            let kind = ResultKind.of(try DocumentError.contents(of: report, what: "a report.json or imgbench run results"))
            if kind == .run { return try checkRun() }
            try checkSizes()
        } catch let e where e is DocumentError || e is RegistryError {
            printErr("imgbench: error: \(e)")
            throw ExitCode(2)
        }
    }

    /// `SizeGate.explain` with the baseline's layers fetched from the registry into a scratch
    /// folder, removed however it ends.
    func explainFromRegistry(_ result: inout GateResult, reference: ImageReference, current: BuildReport, base: BuildReport,
                             reportFolder: String) throws {
        let own = Set(current.steps.compactMap { $0.container?.layerDigest })
        let wanted = Set(base.steps.compactMap { $0.container?.layerDigest }).subtracting(own)
        let scratch = try TemporaryFolder.make(prefix: "imgbench-check-baseline")
        let id = Cleanup.register("check scratch \(scratch)") { try? FileSystem.removeTree(scratch) }
        defer { Cleanup.run(id) }
        let layout = "\(scratch)/\(base.outputs.ociLayout ?? "oci")", options = registry.clientOptions
        try Blocking.run { try await AttachedArtifact.layers(of: reference, wanted, into: layout, options: options) }
        SizeGate.explain(&result, report: current, baseline: base, reportFolder: reportFolder, baselineFolder: scratch)
    }

    func checkSizes() throws {
        let current = try BuildReport.load(report)
        let base = try baseline.load(registry)
        try sameRecipe(current.recipe, base.recipe)
        let b = try budget.map(Budget.load) ?? Budget()
        var result = SizeGate.compare(report: current, baseline: base, budget: b, reportPath: report, baselinePath: baseline.name)
        try b.checkStepKeys(recipe: current.recipe, steps: result.steps)
        // The files behind a breach need the baseline's layers: beside a baseline file, or, for a
        // registry baseline, the layers it does not share with this build, fetched only when
        // something is over budget.
        let reportFolder = (report as NSString).deletingLastPathComponent
        if let reference = baseline.reference {
            if result.checks.contains(where: \.overBudget) {
                try explainFromRegistry(&result, reference: reference, current: current, base: base, reportFolder: reportFolder)
            }
        } else {
            SizeGate.explain(&result, report: current, baseline: base, reportFolder: reportFolder,
                             baselineFolder: (baseline.name as NSString).deletingLastPathComponent)
        }
        try emit(result.warnings, json: result, table: { GateTable.render(result) }, junit: { GateJUnit.render(result) })
        if !result.withinBudget { throw ExitCode(1) }
    }

    func checkRun() throws {
        let current = try RunReport.load(report)
        guard baseline.reference == nil else {
            throw GateError.invalid(place: baseline.name, message: "run results are compared with a file of run results, not a registry reference")
        }
        let base = try RunReport.load(baseline.name)
        try sameRecipe(current.recipe, base.recipe)
        let b = try budget.map(RunBudget.load) ?? RunBudget()
        try b.checkWorkloadKeys(recipe: current.recipe, workloads: Set((current.results + base.results).map(\.workload)))
        let result = RunGate.compare(report: current, baseline: base, budget: b, reportPath: report, baselinePath: baseline.name)
        try emit(result.warnings, json: result, table: { RunGateTable.render(result) }, junit: { RunGateJUnit.render(result) })
        if !result.failures.isEmpty { throw ExitCode(1) }
        if !result.inconclusive.isEmpty { throw ExitCode(3) }
    }

    func sameRecipe(_ current: String, _ base: String) throws {
        guard current == base else {
            throw GateError.invalid(place: "\(baseline.name): at recipe", message: "the baseline is of recipe '\(base)', the report of '\(current)'")
        }
    }

    /// The warnings on stderr, the JUnit file if asked, and the result in the format asked.
    func emit<T: Encodable>(_ warnings: [String], json: T, table: () -> String, junit xml: () -> String) throws {
        if let junit {
            do {
                try Data(xml().utf8).write(to: URL(fileURLWithPath: junit))
            } catch {
                throw GateError.unreadable(path: junit, message: "cannot write the JUnit file: \((error as NSError).localizedDescription)")
            }
        }
        for w in warnings { printErr("imgbench: warning: \(w)") }
        switch format {
        case .table: printOut(table())
        case .json: printOut(try JSONOutput.string(json))
        case .junit: printOut(xml())
        }
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
        var cases = ""
        for c in r.checks {
            let where_ = c.step.map { p in p.index.map { $0 == 0 ? "base" : "step-\($0)" } ?? "removed-step-\(p.baselineIndex ?? 0)" } ?? "image"
            let name = "\(c.figure.rawValue): \(c.subject)"
            cases += "    <testcase classname=\"\(escape("imgbench.\(r.recipe).\(where_)"))\" name=\"\(escape(name))\""
            if c.overBudget {
                cases += ">\n      <failure type=\"size-budget\" message=\"\(escape(c.message))\">\(escape(c.message))</failure>\n    </testcase>\n"
            } else {
                cases += "/>\n"
            }
        }
        return document(suite: "size gate: \(r.recipe)", tests: r.checks.count, failures: r.breaches.count, skipped: 0,
                        properties: [("report", r.report), ("baseline", r.baseline)] + r.warnings.map { ("warning", $0) }, cases: cases)
    }

    /// The XML around the test cases: one suite, its counts and properties.
    static func document(suite: String, tests: Int, failures: Int, skipped: Int, properties: [(String, String)], cases: String) -> String {
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuites name=\"imgbench check\" tests=\"\(tests)\" failures=\"\(failures)\" errors=\"0\">\n"
        x += "  <testsuite name=\"\(escape(suite))\" tests=\"\(tests)\" failures=\"\(failures)\" errors=\"0\" skipped=\"\(skipped)\">\n"
        x += "    <properties>\n"
        for (name, value) in properties { x += "      <property name=\"\(escape(name))\" value=\"\(escape(value))\"/>\n" }
        x += "    </properties>\n"
        return x + cases + "  </testsuite>\n</testsuites>\n"
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
