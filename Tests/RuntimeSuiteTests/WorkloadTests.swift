import Foundation
import Host
import ImageBuild
import RecipePlan
@testable import RuntimeSuite
import Testing

// The figure parsers on real output of the tools (Fixtures/workloads: Debian bookworm's sysbench
// 1.0.20, fio 3.33, iperf3 3.12, redis-benchmark 7.0.15, hpcc 1.5.0, nuttcp 6.1.2 and qperf
// 0.4.11, run on a build host),
// the protocol the workload scripts speak, and the recipe directive that declares workloads.

private func fixture(_ name: String) throws -> String {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/workloads/\(name)")
    return try String(contentsOf: url, encoding: .utf8)
}

@Test func sysbenchFigures() throws {
    #expect(try Figures.sysbenchCPU(try fixture("sysbench-cpu.txt")) == 1033.55)
    #expect(try Figures.sysbenchMemory(try fixture("sysbench-memory.txt")) == 1989.85)
    let oltp = try Figures.sysbenchOLTP(try fixture("sysbench-oltp.txt"))
    #expect(oltp.transactions == 117.03 && oltp.queries == 2340.54)
}

@Test func fioIperfRedisAndHpccFigures() throws {
    let fio = try Figures.fio(try fixture("fio.json"))
    #expect(fio.readIOPS == 5238.88056 && fio.writeIOPS == 5237.881059)
    #expect(abs(try Figures.iperf3(try fixture("iperf3.json")) - 12711816396.931742) < 1e-3)
    #expect(try Figures.redisBenchmark(try fixture("redis-benchmark.csv")) == ["SET": 30211.48, "GET": 22421.52])
    let h = try Figures.hpcc(try fixture("hpcc-summary.txt"))
    #expect(h.streamTriadGBs == 73.9979 && h.randomAccessGUPs == 0.16888)
    #expect(abs(h.hplGFLOPs - 5.74368) < 1e-9)
}

@Test func nuttcpAndQperfFigures() throws {
    #expect(try Figures.nuttcp(try fixture("nuttcp-fparse.txt")) == 15539.3976)
    let q = try Figures.qperf(try fixture("qperf-lat.txt"))
    #expect(Set(q.keys) == ["tcp_lat", "udp_lat"] && q.values.allSatisfy { $0 > 1e-7 && $0 < 1e-3 }, "\(q)")
    // Other units, and the thousands separator qperf prints.
    #expect(try Figures.qperf("tcp_lat:\n    latency  =  1,250 ns\nudp_lat:\n    latency  =  2.5 ms\n") == ["tcp_lat": 1.25e-6, "udp_lat": 2.5e-3])
    #expect(throws: FigureError.self) { try Figures.nuttcp("nuttcp-t: v6.1.2: Error: connect: Connection refused\n") }
    #expect(throws: FigureError.self) { try Figures.qperf("failed to connect: Connection refused\n") }
    // Through the VM's serial console.
    #expect(try Figures.nuttcp("\u{1b}c" + (try fixture("nuttcp-fparse.txt")).replacingOccurrences(of: "\n", with: "\r\n")) == 15539.3976)
}

@Test func figuresSurviveASerialConsole() throws {
    // What the VM's console gives: CRLF line ends, a console reset before the first line, and
    // a warning before fio's JSON.
    let cpu = "\u{1b}c\u{1b}[?7l" + (try fixture("sysbench-cpu.txt")).replacingOccurrences(of: "\n", with: "\r\n")
    #expect(try Figures.sysbenchCPU(cpu) == 1033.55)
    let fio = "fio: note: both iodepth >= 1 and synchronous I/O engine are selected\r\n" + (try fixture("fio.json")).replacingOccurrences(of: "\n", with: "\r\n")
    #expect(try Figures.fio(fio).readIOPS == 5238.88056)
}

@Test func outputWithoutTheFigureIsAnError() {
    #expect(throws: FigureError.self) { try Figures.sysbenchCPU("sysbench: command not found") }
    #expect(throws: FigureError.self) { try Figures.fio("{\"jobs\": []}") }
    #expect(throws: FigureError.self) { try Figures.iperf3("{\"error\": \"unable to connect to server: Connection refused\"}") }
    #expect(throws: FigureError.self) { try Figures.hpcc("Begin of Summary section.\nHPL_Tflops=0.1\n") }
    #expect(throws: FigureError.self) { try Figures.redisBenchmark("\"test\",\"rps\"\n") }
}

/// Runs a workload's script with the host's /bin/sh and follows its output as the runner does.
private func runScript(_ w: Workload, parameters: WorkloadParameters) throws -> (ProtocolWatch, Command.Result) {
    let work = FileManager.default.temporaryDirectory.path + "/imgbench-workload-\(UUID().uuidString.prefix(8))"
    defer { try? FileManager.default.removeItem(atPath: work) }
    let id = RuntimeBench.newID()
    let watch = ProtocolWatch(id: id)
    let r = try Command.run(["/bin/sh", "-c", w.script(id: id, parameters: parameters, work: work, port: ServerPorts(control: 0))], timeout: 30,
                            onOutput: { watch.feed($0) })
    return (watch, r)
}

@Test func aMissingToolIsNamedBeforeAnythingRuns() throws {
    var w = try #require(Workload.named("sysbench-cpu"))
    w.tools = ["imgbench-no-such-tool"]
    let (watch, r) = try runScript(w, parameters: WorkloadParameters(cpus: 1, memoryBytes: 1 << 30, durationSeconds: 1))
    #expect(r.status == 127)
    #expect(watch.missingTool == "imgbench-no-such-tool")
    #expect(watch.endStatus == nil && watch.body.isEmpty, "\(r.output)")
}

@Test func theScriptFramesTheBodyAndItsStatus() throws {
    var w = try #require(Workload.named("sysbench-cpu"))
    w.tools = ["sh"]
    w.body = { _ in "echo \"threads $T for $D s\"; echo line two; exit 3" }
    let (watch, r) = try runScript(w, parameters: WorkloadParameters(cpus: 2, memoryBytes: 1 << 30, durationSeconds: 7))
    #expect(r.status == 0)
    #expect(watch.body == "threads 2 for 7 s\nline two", "\(r.output)")
    #expect(watch.endStatus == 3)
    #expect(watch.missingTool == nil)
}

@Test func everyWorkloadHasFiguresAToolAndAUniqueName() {
    #expect(Set(Workload.all.map(\.name)).count == Workload.all.count)
    for w in Workload.all {
        #expect(!w.tools.isEmpty && !w.figures.isEmpty, "\(w.name)")
        #expect(w.isServer == (w.client != nil), "\(w.name): a server workload needs a client, and only it")
    }
    #expect(Set(Workload.all.map(\.name)) == ["sysbench-cpu", "sysbench-memory", "fio-randrw", "sysbench-oltp", "sysbench-oltp-root", "redis", "hpcc", "iperf3", "nuttcp", "qperf"])
}

@Test func recipesDeclareWorkloads() throws {
    let r = try RecipeParser(file: "recipes/demo/Containerfile").parse("# vm-size=1G\n# workloads=sysbench-cpu, fio-randrw,sysbench-cpu\nFROM scratch\n")
    #expect(r.workloads == ["sysbench-cpu", "fio-randrw"])
    #expect(try RecipeParser(file: "recipes/demo/Containerfile").parse("FROM scratch\n").workloads.isEmpty)
}

@Test(arguments: [
    ("# workloads=sysbench-cpu,frobnicate\nFROM scratch\n", 1, 26, "unknown workload 'frobnicate'"),
    ("# workloads= sysbench-cpu, nope\nFROM scratch\n", 1, 28, "unknown workload 'nope'"),
    ("# workloads=\nFROM scratch\n", 1, 13, "unknown workload ''"),
    ("FROM scratch\n# workloads=redis\n", 2, 1, "must come before"),
])
func badWorkloadDirectivesAreRefusedWithFileLineColumn(text: String, line: Int, column: Int, message: String) throws {
    do {
        try Workload.validate(RecipeParser(file: "recipes/demo/Containerfile").parse(text))
        Issue.record("accepted: \(text)")
    } catch let e as RecipeError {
        #expect(e.location.line == line && e.location.column == column, "\(e)")
        #expect(e.message.contains(message), "\(e)")
    }
}
