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
