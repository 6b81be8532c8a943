import Foundation
import Host
@testable import ImageBuild
import RecipePlan
import Testing
import TestSupport

// The report and the hand-off manifest against their documented schemas (docs/*.json): the
// subset of JSON Schema those files use (type, required, properties, items, $ref, const, enum,
// additionalProperties), with every key written required to be documented.

private func encoded<T: Encodable>(_ v: T) throws -> Any {
    try JSONSerialization.jsonObject(with: JSONEncoder().encode(v))
}

@Test func handoffMatchesItsSchema() throws {
    let s = try documentedSchema("handoff-schema.json")
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

@Test func reportMatchesItsSchema() throws {
    // Every key the schema requires is what the encoder writes, at the top and in a step.
    let schemaURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/report-schema.json")
    let schema = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: schemaURL)) as? [String: Any])
    var m = BuildReport.Measure(seconds: 1, cacheHit: false)
    m.builtSeconds = 1
    m.qcow2AllocatedBytes = 1
    m.wasted = .init(overwrittenLaterBytes: 1)
    var totals = BuildReport.Totals(seconds: 1, cacheHits: 0, cacheMisses: 1)
    totals.containerBuiltSeconds = 1
    totals.vmBuiltSeconds = 1
    totals.wasted = .init(overwrittenLaterBytes: 1)
    let report = BuildReport(
        recipe: "t", recipeFile: "t/Containerfile", targets: ["vm"], startedAt: "2026-01-01T00:00:00Z",
        base: .init(description: "scratch", key: "k", container: nil, vm: m),
        steps: [.init(index: 1, instruction: "RUN true", location: "t:1:1", target: "both", key: "k1", changesFiles: true, container: nil, vm: m)],
        finalisation: nil, totals: totals, outputs: .init(folder: "out/t"), provenance: .current(accelerator: "tcg"),
        update: UpdateDelta(baseline: "out/old", containerNewLayers: 1, containerBytes: 2, containerFullBytes: 3, vmBytes: 4, vmClusters: 5, vmFullBytes: 6))
    let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
    // Where and from what it was made (issue 18), as the schema documents it.
    let provenance = try #require(json["provenance"])
    let problems = schemaProblems(provenance, ["$ref": "#/$defs/provenance"], root: schema)
    #expect(problems.isEmpty, "\(problems)")
    #expect(!schemaProblems(["kernel": 1] as [String: Any], ["$ref": "#/$defs/provenance"], root: schema).isEmpty, "the checker checks")
    let update = schemaProblems(try #require(json["update"]), ["$ref": "#/$defs/update"], root: schema)
    #expect(update.isEmpty && (json["update"] as? [String: Any])?.count == 7, "\(update)")
    let required = try #require(schema["required"] as? [String])
    for k in required { #expect(json[k] != nil, "report lacks \(k)") }
    let properties = try #require(schema["properties"] as? [String: Any])
    for k in json.keys { #expect(properties[k] != nil, "schema lacks \(k)") }
    let defs = try #require(schema["$defs"] as? [String: Any])
    let step = try #require((json["steps"] as? [[String: Any]])?.first)
    let stepSchema = try #require(defs["step"] as? [String: Any])
    for k in try #require(stepSchema["required"] as? [String]) { #expect(step[k] != nil, "step lacks \(k)") }
    for k in step.keys { #expect((stepSchema["properties"] as? [String: Any])?[k] != nil, "schema's step lacks \(k)") }
    // A measure, the totals and the wasted bytes of each: every key is in the schema.
    func props(_ def: Any?) -> [String: Any] { ((def as? [String: Any])?["properties"] as? [String: Any]) ?? [:] }
    let measure = try #require(step["vm"] as? [String: Any])
    for k in measure.keys { #expect(props(defs["measure"])[k] != nil, "schema's measure lacks \(k)") }
    let totalsJSON = try #require(json["totals"] as? [String: Any])
    for k in totalsJSON.keys { #expect(props(properties["totals"])[k] != nil, "schema's totals lack \(k)") }
    for waste in [measure["wasted"], totalsJSON["wasted"]] {
        let w = try #require(waste as? [String: Any])
        for k in w.keys { #expect(props(defs["waste"])[k] != nil, "schema's waste lacks \(k)") }
    }
    #expect(json["schemaVersion"] as? Int == BuildReport.currentSchemaVersion)
}
