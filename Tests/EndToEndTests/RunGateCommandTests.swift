import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import TestSupport

/// `imgbench check` on `imgbench run` results written here (the performance gate), a budget key
/// that names no step, and `imgbench --version`.
struct RunGateCommandTests {
    /// Run results of recipe t: sysbench-cpu's events/s in the container, one value per round.
    static func run(_ rounds: [Double]) -> [String: Any] {
        let sorted = rounds.sorted()
        let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        let side: [String: Any] = ["status": "ok", "seconds": 10.0, "limits": "pinned to CPU 0",
                                   "figures": [["name": "events/s", "unit": "events/s", "value": median, "samples": rounds]]]
        return [
            "schemaVersion": 1, "kind": "run", "manifest": "out/t/handoff.json", "recipe": "t", "startedAt": "2026-01-01T00:00:00Z",
            "host": ["cpus": 2, "cpuModel": "cpu", "kernel": "6.1"],
            "settings": ["cpus": 1, "cpuList": "0", "memoryBytes": 1 << 30, "durationSeconds": 10, "timeoutSeconds": 300.0, "repeats": rounds.count],
            "results": [["workload": "sysbench-cpu", "summary": "s", "declared": true, "notes": [] as [String],
                         "figures": [["name": "events/s", "unit": "events/s", "higherIsBetter": true]], "container": side]],
        ]
    }

    static let tight: [Double] = [1000, 1004, 996, 1002, 998]

    @Test func slowerFailsWideIsInconclusiveWithExit3AndUnchangedPasses() throws {
        let dir = try TempDir("gate-run")
        try GateCommandTests.write(Self.run(Self.tight), dir.file("base.json"))
        try GateCommandTests.write(Self.run(Self.tight.map { $0 * 0.7 }), dir.file("slow.json"))
        try GateCommandTests.write(Self.run([400, 1300, 700, 1000, 600]), dir.file("wide.json"))
        try GateCommandTests.write(Self.run([1001, 999, 1003, 997, 1000]), dir.file("same.json"))
        var r = try imgbench("check", dir.file("slow.json"), "--baseline", dir.file("base.json"), "--junit", dir.file("junit.xml"))
        #expect(r.status == 1 && r.stdout.contains("worse: t: sysbench-cpu, container, events/s") && r.stdout.contains("30.0% worse"), "\(r.output)")
        #expect(r.stderr.contains("warning:") && r.stderr.contains("records where it was made"), "\(r.stderr)")
        let xml = JUnitCounter()
        let parser = XMLParser(data: try #require(FileManager.default.contents(atPath: dir.file("junit.xml"))))
        parser.delegate = xml
        #expect(parser.parse() && xml.testcases == 1 && xml.failures == 1, "\(xml.failureMessages)")
        r = try imgbench("check", dir.file("wide.json"), "--baseline", dir.file("base.json"), "--format", "json")
        #expect(r.status == 3, "\(r.output)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect((json["checks"] as? [[String: Any]])?.first?["verdict"] as? String == "inconclusive", "\(r.stdout)")
        r = try imgbench("check", dir.file("same.json"), "--baseline", dir.file("base.json"))
        #expect(r.status == 0 && r.stdout.contains("within budget"), "\(r.output)")
        // A budget whose workload key names no workload: exit 2 naming the key and its place.
        try "recipes:\n  t:\n    workloads:\n      sysbench-cpus: {percent: 1%}\n".write(toFile: dir.file("b.yaml"), atomically: true, encoding: .utf8)
        r = try imgbench("check", dir.file("same.json"), "--baseline", dir.file("base.json"), "--budget", dir.file("b.yaml"))
        #expect(r.status == 2 && r.stderr.contains("\(dir.file("b.yaml")):4:7: the workload key \"sysbench-cpus\""), "\(r.output)")
        // A run result against a build report: the baseline is named.
        try GateCommandTests.write(GateCommandTests.report(GateCommandTests.baseline), dir.file("report.json"))
        r = try imgbench("check", dir.file("same.json"), "--baseline", dir.file("report.json"))
        #expect(r.status == 2 && r.stderr.contains(dir.file("report.json")), "\(r.output)")
    }

    @Test func aStepKeyThatNamesNoStepExits2AndVersionNamesTheCommit() throws {
        let dir = try TempDir("gate-keys")
        try GateCommandTests.write(GateCommandTests.report(GateCommandTests.baseline), dir.file("baseline.json"))
        try "recipes:\n  t:\n    steps:\n      \"RUN apt-get update\": {bytes: 50MiB}\n".write(toFile: dir.file("budget.yaml"), atomically: true, encoding: .utf8)
        var r = try imgbench("check", dir.file("baseline.json"), "--baseline", dir.file("baseline.json"), "--budget", dir.file("budget.yaml"))
        #expect(r.status == 2 && r.stderr.contains("\(dir.file("budget.yaml")):4:7: the step key \"RUN apt-get update\""), "\(r.output)")
        r = try imgbench("--version")
        #expect(r.status == 0 && r.stdout.hasPrefix("imgbench ") && r.stdout.contains("(commit "), "\(r.output)")
    }
}
