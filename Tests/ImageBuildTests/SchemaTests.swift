import Foundation
import Testing
@testable import ImageBuild

// The hand-off manifest and the run results against their documented schemas (docs/*.json): the
// subset of JSON Schema those files use (type, required, properties, items, $ref, const, enum,
// additionalProperties), with every key written required to be documented.

private func schema(_ name: String) throws -> [String: Any] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/\(name)")
    return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
}

/// What in `value` the schema does not allow, each with its JSON path.
func schemaProblems(_ value: Any, _ s: [String: Any], root: [String: Any], at path: String = "$") -> [String] {
    if let ref = s["$ref"] as? String {
        let name = String(ref.dropFirst("#/$defs/".count))
        guard let def = (root["$defs"] as? [String: Any])?[name] as? [String: Any] else { return ["\(path): no $defs/\(name)"] }
        return schemaProblems(value, def, root: root, at: path)
    }
    var out: [String] = []
    if let c = s["const"] {
        if "\(c)" != "\(value)" { out.append("\(path): \(value) is not the constant \(c)") }
    }
    if let e = s["enum"] as? [Any], !e.contains(where: { "\($0)" == "\(value)" }) { out.append("\(path): \(value) is not one of \(e)") }
    switch s["type"] as? String {
    case "object"?:
        guard let o = value as? [String: Any] else { return out + ["\(path): not an object"] }
        for k in s["required"] as? [String] ?? [] where o[k] == nil { out.append("\(path): lacks required \(k)") }
        let props = s["properties"] as? [String: Any]
        for (k, v) in o {
            if let p = props?[k] as? [String: Any] {
                out += schemaProblems(v, p, root: root, at: "\(path).\(k)")
            } else if let extra = s["additionalProperties"] as? [String: Any] {
                out += schemaProblems(v, extra, root: root, at: "\(path).\(k)")
            } else {
                out.append("\(path): \(k) is not documented")
            }
        }
    case "array"?:
        guard let a = value as? [Any] else { return out + ["\(path): not an array"] }
        if let items = s["items"] as? [String: Any] {
            for (i, v) in a.enumerated() { out += schemaProblems(v, items, root: root, at: "\(path)[\(i)]") }
        }
    case "string"?: if !(value is String) { out.append("\(path): not a string") }
    case "integer"?: if (value as? NSNumber).map({ $0.doubleValue != $0.doubleValue.rounded() }) ?? true { out.append("\(path): not an integer") }
    case "number"?: if !(value is NSNumber) { out.append("\(path): not a number") }
    case "boolean"?: if !isBoolean(value) { out.append("\(path): not a boolean") }
    default: break
    }
    return out
}

/// JSONSerialization gives booleans as Bool or as an NSNumber of 0 or 1, depending on the platform.
private func isBoolean(_ v: Any) -> Bool {
    if v is Bool { return true }
    return (v as? NSNumber).map { $0.doubleValue == 0 || $0.doubleValue == 1 } ?? false
}

private func encoded<T: Encodable>(_ v: T) throws -> Any {
    try JSONSerialization.jsonObject(with: JSONEncoder().encode(v))
}

@Test func handoffMatchesItsSchema() throws {
    let s = try schema("handoff-schema.json")
    var outputs = BuildReport.Outputs(folder: "out/t")
    outputs.ociLayout = "oci"
    outputs.imageDigest = "sha256:" + String(repeating: "ab", count: 32)
    outputs.bundle = "bundle"
    outputs.vmChain = ["vm/chain/a.qcow2", "vm/chain/b.qcow2"]
    outputs.vmDisk = "vm/disk.qcow2"
    outputs.kernel = "vm/boot/vmlinuz"
    outputs.initrd = "vm/boot/initrd.img"
    outputs.kernelCommandLine = "root=/dev/vda rw console=ttyS0"
    var totals = BuildReport.Totals(seconds: 1, cacheHits: 0, cacheMisses: 1)
    totals.vmVirtualSize = 1 << 30
    let report = BuildReport(recipe: "t", recipeFile: "t/Containerfile", targets: ["container", "vm"], startedAt: "2026-01-01T00:00:00Z",
                             base: .init(description: "scratch", key: "k", container: nil, vm: nil), steps: [],
                             finalisation: nil, totals: totals, outputs: outputs)
    let h = Handoff(report: report, workloads: ["sysbench-cpu"])
    #expect(h.container?.imageDigest == outputs.imageDigest && h.vm?.boot.initrd == "vm/boot/initrd.img" && h.vm?.chain.count == 2)
    let problems = schemaProblems(try encoded(h), s, root: s)
    #expect(problems.isEmpty, "\(problems)")

    // A container-only build: no vm section, still valid.
    var containerOnly = report
    containerOnly.outputs.vmDisk = nil
    containerOnly.outputs.kernel = nil
    let c = Handoff(report: containerOnly, workloads: [])
    #expect(c.vm == nil && c.container != nil)
    #expect(schemaProblems(try encoded(c), s, root: s).isEmpty)
    #expect(!schemaProblems(["schemaVersion": 2, "recipe": ["name": "t"]] as [String: Any], s, root: s).isEmpty, "the checker checks")
}

@Test func runResultsMatchTheirSchema() throws {
    let s = try schema("run-schema.json")
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
        ])
    let problems = schemaProblems(try encoded(report), s, root: s)
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
