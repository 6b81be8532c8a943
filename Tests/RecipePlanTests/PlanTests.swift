import Foundation
import Host
@testable import RecipePlan
import Testing

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
    #expect(throws: RecipeError.self) { try keys(dir) }
}
