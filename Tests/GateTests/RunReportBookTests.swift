import Foundation
@testable import Gate
@testable import ImageBuild
import Layers
@testable import Measure
import OCI
import RecipePlan
@testable import RuntimeSuite
import Testing

/// imgbench run results in `imgbench report`: the figures of each side and the ratios to native.
@Test func runResultsBecomeTablesOfFiguresAndRatios() throws {
    func side(_ v: Double, ratio: Double?, vm: Bool = false) -> RunReport.SideResult {
        var s = RunReport.SideResult(status: .ok, seconds: 1, figures: [Figure(name: "events/s", unit: "events/s", value: v)],
                                     ratios: ratio.map { ["events/s": $0] }, limits: "")
        if vm { s.accelerator = "tcg"; s.emulated = true }
        return s
    }
    var missing = RunReport.SideResult(status: .missingTool, seconds: 0.1, figures: [], limits: "")
    missing.missingTool = "fio"
    let report = RunReport(
        manifest: "out/t/handoff.json", recipe: "t", imageDigest: nil, startedAt: "2026-01-01T00:00:00Z",
        host: .init(cpus: 2, cpuModel: "cpu", kernel: "6.1"),
        settings: .init(cpus: 1, cpuList: "0", memoryBytes: 1 << 30, durationSeconds: 2, timeoutSeconds: 300, repeats: 1),
        results: [
            .init(workload: "sysbench-cpu", summary: "", declared: true, figures: [FigureSpec(name: "events/s", unit: "events/s")],
                  native: side(3053, ratio: nil), container: side(3018, ratio: 0.9885), vm: side(842.9, ratio: 0.2761, vm: true), notes: []),
            .init(workload: "fio-randrw", summary: "", declared: false, figures: [FigureSpec(name: "read IOPS", unit: "IOPS")],
                  native: nil, container: missing, vm: nil, notes: []),
        ])
    let path = NSTemporaryDirectory() + "/imgbench-run-report-\(getpid()).json"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: path))
    var book = ReportBook()
    try book.add(file: path)
    #expect(book.tables.map(\.title) == ["Runtime workloads", "Runtime relative to native"])
    let md = book.markdown()
    #expect(md.contains("| t sysbench-cpu: events/s | 3053 | 3018 | 842.9 |"), "\(md)")
    #expect(md.contains("| t sysbench-cpu: events/s | 0.99x | 0.28x |"), "\(md)")
    #expect(md.contains("| t fio-randrw: read IOPS (IOPS) | - | - | - |"), "a side that lacks the tool has no figure: \(md)")
    #expect(md.contains("VM (TCG)") && md.contains("not comparable to native"), "\(md)")
}

/// Sharma et al.'s start-up and footprint get tables in their own units, charted with error bars
/// from the rounds and a logarithmic axis when the sides span decades.
@Test func startupAndFootprintBecomeTablesInSecondsAndBytes() throws {
    func side(_ figures: [(String, String, Double, [Double])]) -> RunReport.SideResult {
        RunReport.SideResult(status: .ok, seconds: 1, figures: figures.map { Figure(name: $0.0, unit: $0.1, value: $0.2, samples: $0.3) }, limits: "")
    }
    let report = RunReport(
        manifest: "out/tiny/handoff.json", recipe: "tiny", imageDigest: nil, startedAt: "2026-01-01T00:00:00Z",
        host: .init(cpus: 2, cpuModel: "cpu", kernel: "6.1"),
        settings: .init(cpus: 1, cpuList: "0", memoryBytes: 1 << 30, durationSeconds: 2, timeoutSeconds: 300, repeats: 3),
        results: [
            .init(workload: "startup", summary: "", declared: true, figures: Experiment.startup.figures,
                  native: side([("ready", "s", 0.0031, [0.003, 0.0031, 0.0045])]),
                  container: side([("ready", "s", 0.092, [0.09, 0.092, 0.1]), ("create", "s", 0.06, [0.05, 0.06, 0.07]), ("start", "s", 0.032, [0.03, 0.032, 0.04])]),
                  vm: side([("ready", "s", 14.2, [13.9, 14.2, 15.0])]), notes: []),
            .init(workload: "footprint", summary: "", declared: true, figures: Experiment.footprint.figures,
                  native: side([("PSS", "MiB", 0.3, [0.3, 0.3, 0.3]), ("RSS", "MiB", 1.9, [1.9, 1.9, 1.9])]),
                  container: side([("PSS", "MiB", 0.4, [0.4, 0.4, 0.5]), ("RSS", "MiB", 2.0, [2.0, 2.0, 2.1])]),
                  vm: side([("PSS", "MiB", 180, [170, 180, 190]), ("RSS", "MiB", 185, [175, 185, 195]), ("guest used", "MiB", 40, [39, 40, 41])]), notes: []),
        ])
    let path = NSTemporaryDirectory() + "/imgbench-startup-report-\(getpid()).json"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: path))
    var book = ReportBook()
    try book.add(file: path)
    #expect(book.tables.map(\.title) == ["Runtime workloads", "Runtime relative to native", "Start-up time", "Idle footprint"])
    let md = book.markdown()
    #expect(md.contains("| tiny: ready | 0.003100 s | 0.09200 s | 14.2 s |"), "milliseconds keep their figures: \(md)")
    #expect(md.contains("| tiny: create | - | 0.06000 s | - |"), "\(md)")
    #expect(md.contains("| tiny: guest used | - | - | 40.0 MiB |"), "\(md)")
    #expect(md.contains("Sharma et al. (Middleware 2016)"), "\(md)")
    let startup = try #require(book.tables.first { $0.title == "Start-up time" })
    #expect(startup.range(0, 2) == 13.9...15.0)
    let svg = book.svg(startup)
    #expect(svg.contains("logarithmic axis"), "3 ms to 14 s span decades")
    let footprint = try #require(book.tables.first { $0.title == "Idle footprint" })
    #expect(footprint.rows[0].values[2] == Double(180 << 20), "MiB become bytes")
}
