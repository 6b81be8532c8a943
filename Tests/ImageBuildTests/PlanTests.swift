import Foundation
import Testing
@testable import ImageBuild

/// A recipe folder in a temporary directory.
private func recipeFolder(_ containerfile: String, files: [String: String] = [:]) throws -> String {
    let dir = NSTemporaryDirectory() + "imgbench-plan-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try containerfile.write(toFile: dir + "/Containerfile", atomically: true, encoding: .utf8)
    for (name, content) in files {
        let path = dir + "/" + name
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try content.write(toFile: path, atomically: true, encoding: .utf8)
    }
    return dir
}

private func keys(_ dir: String, args: [String: String] = [:], base: String = "debian-key") throws -> [String] {
    try BuildPlan.make(try RecipeParser.load(dir, buildArgs: args), baseKey: base).steps.map(\.key)
}

private let recipe = """
    FROM debian:bookworm
    ARG V=1
    COPY app/ /app/
    RUN echo one
    RUN echo two
    """

@Test func keysAreStableAndChainFromTheBase() throws {
    let dir = try recipeFolder(recipe, files: ["app/a.txt": "a"])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let k1 = try keys(dir)
    #expect(k1 == (try keys(dir)))
    #expect(Set(k1).count == k1.count)
    // Another base changes every key.
    #expect(zip(k1, try keys(dir, base: "other")).allSatisfy { $0 != $1 })
}

@Test func changingOneStepChangesItsKeyAndTheOnesAfter() throws {
    let a = try recipeFolder(recipe, files: ["app/a.txt": "a"])
    let b = try recipeFolder(recipe.replacingOccurrences(of: "echo one", with: "echo uno"), files: ["app/a.txt": "a"])
    defer { for d in [a, b] { try? FileManager.default.removeItem(atPath: d) } }
    let ka = try keys(a), kb = try keys(b)
    #expect(ka[0] == kb[0] && ka[1] == kb[1])
    #expect(ka[2] != kb[2] && ka[3] != kb[3])
}

@Test func copySourceContentIsPartOfTheKey() throws {
    let dir = try recipeFolder(recipe, files: ["app/a.txt": "a"])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let before = try keys(dir)
    try "changed".write(toFile: dir + "/app/a.txt", atomically: true, encoding: .utf8)
    let after = try keys(dir)
    #expect(before[0] == after[0])
    #expect(before[1] != after[1] && before[3] != after[3])
    // An ignored file changes nothing.
    try "**/*.log\n".write(toFile: dir + "/.containerignore", atomically: true, encoding: .utf8)
    let withIgnore = try keys(dir)
    try "noise".write(toFile: dir + "/app/debug.log", atomically: true, encoding: .utf8)
    #expect(try keys(dir) == withIgnore)
}

@Test func buildArgsSeenByAStepArePartOfItsKey() throws {
    let dir = try recipeFolder(recipe, files: ["app/a.txt": "a"])
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let k1 = try keys(dir), k2 = try keys(dir, args: ["V": "2"])
    #expect(k1[0] != k2[0])
}

@Test func copyFromOutsideTheContextIsRefused() throws {
    let dir = try recipeFolder("FROM scratch\nCOPY ../secret /x\n")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(throws: BuildError.self) { try keys(dir) }
}

@Test func reportMatchesItsSchema() throws {
    // Every key the schema requires is what the encoder writes, at the top and in a step.
    let schemaURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/report-schema.json")
    let schema = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: schemaURL)) as? [String: Any])
    var m = BuildReport.Measure(seconds: 1, cacheHit: false)
    m.qcow2AllocatedBytes = 1
    m.wasted = .init(overwrittenLaterBytes: 1)
    var totals = BuildReport.Totals(seconds: 1, cacheHits: 0, cacheMisses: 1)
    totals.wasted = .init(overwrittenLaterBytes: 1)
    let report = BuildReport(
        recipe: "t", recipeFile: "t/Containerfile", targets: ["vm"], startedAt: "2026-01-01T00:00:00Z",
        base: .init(description: "scratch", key: "k", container: nil, vm: m),
        steps: [.init(index: 1, instruction: "RUN true", location: "t:1:1", target: "both", key: "k1", changesFiles: true, container: nil, vm: m)],
        finalisation: nil, totals: totals, outputs: .init(folder: "out/t"))
    let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
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
