import Foundation
@testable import RecipePlan
import Testing

// Issue 13: recipes that crashed the parser or ran it out of memory or time, and the limits that
// now stop them with the place.

private func parse(_ text: String, limits: RecipeLimits = .standard) throws -> Recipe {
    try RecipeParser(file: "recipes/demo/Containerfile", limits: limits).parse(text)
}

private func refusal(_ text: String, limits: RecipeLimits = .standard) -> RecipeError? {
    do {
        _ = try parse(text, limits: limits)
        return nil
    } catch let e as RecipeError {
        return e
    } catch {
        return RecipeError(SourceLocation(file: "", line: 0, column: 0), "not a RecipeError: \(error)")
    }
}

@Test func aRecipeWithCRLFLineEndsParsesAsWithLF() throws {
    let lf = "FROM scratch\nRUN echo a \\\n  && echo b\nENV A=b\nLABEL x=y\n"
    let crlf = lf.replacingOccurrences(of: "\n", with: "\r\n")
    let r = try parse(crlf)
    #expect(r.steps.map(\.instruction) == (try parse(lf)).steps.map(\.instruction))
    #expect(r.steps.map(\.location.line) == [2, 4, 5])
    #expect(r.steps.first?.instruction == .run(.shell("echo a   && echo b")))
    // A lone CR at the very end, and a CRLF file without a final line end.
    #expect(try parse("FROM scratch\r").steps.isEmpty)
    #expect(try parse("FROM scratch\r\nUSER me").steps.map(\.instruction) == [.user("me")])
}

@Test func doubleDashEndsTheFlagsAndAnEmptyFlagIsRefused() throws {
    #expect(try parse("FROM scratch\nRUN -- x\n").steps.first?.instruction == .run(.shell("x")))
    #expect(try parse("FROM scratch\nRUN --network=none -- --x\n").steps.first?.instruction == .run(.shell("--x")))
    let e = try #require(refusal("FROM scratch\nRUN --=x y\n"))
    #expect(e.location.line == 2 && e.message.contains("not a flag"), "\(e)")
}

@Test func anEmptyBaseNameIsRefused() throws {
    for text in ["FROM \"\"\n", "FROM ''\n", "ARG B\nFROM ${B}\n"] {
        let e = try #require(refusal(text), "\(text) was accepted")
        #expect(e.message.contains("FROM needs an image"), "\(e)")
    }
}

/// Inputs the fuzzer (bench/fuzz) found to crash the parser, each now a refusal at its place.
@Test(arguments: [
    ("\t\t\t\t\t\tFROM\t\t\t\t\t:\n\u{0}0\\", 1, "unsupported base ':'"),
    ("FROM :latest\n", 1, "unsupported base ':latest'"),
    ("FROM scratch\nEXPOSE 60/tcp ${SUITE} AS base\n", 2, "'' is not a port"),
    ("FROM scratch\nEXPOSE /\n", 2, "'/' is not a port"),
])
func fuzzFindingsAreRefusalsNotCrashes(text: String, line: Int, says: String) throws {
    let e = try #require(refusal(text), "accepted: \(text.debugDescription)")
    #expect(e.location.line == line && e.message.contains(says), "\(e)")
}

@Test func aValueDoublingPastTheWordLimitStopsWhereItPassesIt() throws {
    // 16 bytes doubled 17 times passes 1 MiB: line 2 + 17.
    let text = "FROM scratch\nENV X=aaaaaaaaaaaaaaaa\n" + String(repeating: "ENV X=${X}${X}\n", count: 40)
    let e = try #require(refusal(text))
    #expect(e.location.line == 19, "\(e)")
    #expect(e.message.contains("\(RecipeLimits.standard.expandedWordBytes) bytes"), "\(e)")
}

@Test func valuesInForceAreBoundedInBytesAndInNumber() throws {
    var limits = RecipeLimits()
    limits.environmentBytes = 64
    let e = try #require(refusal("FROM scratch\nENV A=0123456789012345678901234567890\nARG B=01234567890123456789012345678901\n", limits: limits))
    #expect(e.location.line == 3 && e.message.contains("64 bytes"), "\(e)")
    // Setting the same variable again replaces its bytes rather than adding to them.
    #expect(try parse("FROM scratch\n" + String(repeating: "ENV A=0123456789\n", count: 50), limits: limits).steps.count == 50)
    limits = RecipeLimits()
    limits.variables = 3
    let n = try #require(refusal("ARG G=1\nFROM scratch\nENV A=1 B=2\nENV C=3\n", limits: limits))
    #expect(n.location.line == 4 && n.message.contains("more than 3"), "\(n)")
    limits = RecipeLimits()
    limits.recordedVariables = 10
    let r = try #require(refusal("FROM scratch\nENV A=1 B=2\n" + String(repeating: "LABEL x=y\n", count: 10), limits: limits))
    #expect(r.location.line == 7, "\(r)")
}

@Test func linesLogicalLinesAndInstructionsAreBounded() throws {
    let long = "FROM scratch\nRUN " + String(repeating: "a", count: RecipeLimits.standard.lineBytes) + "\n"
    let e = try #require(refusal(long))
    #expect(e.location.line == 2 && e.message.contains("bytes long"), "\(e)")
    var limits = RecipeLimits()
    limits.logicalLineBytes = 100
    let joined = "FROM scratch\nRUN a \\\n" + String(repeating: String(repeating: "b", count: 40) + " \\\n", count: 3) + "c\n"
    let j = try #require(refusal(joined, limits: limits))
    #expect(j.location.line == 2 && j.message.contains("up to line 5"), "\(j)")
    limits = RecipeLimits()
    limits.instructions = 5
    #expect(try parse("FROM scratch\n" + String(repeating: "LABEL a=b\n", count: 5), limits: limits).steps.count == 5)
    let i = try #require(refusal("FROM scratch\n" + String(repeating: "LABEL a=b\n", count: 6), limits: limits))
    #expect(i.location.line == 7 && i.message.contains("more than 5 instructions"), "\(i)")
}

@Test func manyInstructionsAndLongContinuationsParseInOnePass() throws {
    // 20k LABEL lines and a RUN of 20k continuation lines: each took time growing with the square
    // of its length (the logical line was copied for every line added to it).
    let labels = "FROM scratch\n" + (0..<20_000).map { "LABEL n\($0)=v\($0)\n" }.joined()
    let r = try parse(labels)
    #expect(r.steps.count == 20_000)
    #expect(r.steps.last?.instruction == .label([KeyValue("n19999", "v19999")]))
    let run = "FROM scratch\nRUN true \\\n" + String(repeating: " && true \\\n", count: 20_000) + " && echo end\n"
    let s = try parse(run)
    #expect(s.steps.count == 1 && s.steps[0].text.hasSuffix("&& echo end"))
}

@Test func anUnclosedSubstitutionFloodIsRefusedWithoutRereadingTheLine() throws {
    let e = try #require(refusal("FROM scratch\nLABEL a=" + String(repeating: "${", count: 100_000) + "\n"))
    #expect(e.location.line == 2 && e.message.contains("unterminated ${"), "\(e)")
}
