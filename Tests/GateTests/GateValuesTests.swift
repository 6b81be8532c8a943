import Foundation
@testable import Gate
@testable import ImageBuild
import OCI
import Testing
import TestSupport

// Issue 13: budgets and reports whose values crashed `imgbench check` or gave no place, and a
// pairing of steps that grew with the square of their number.

private func budgetError(_ text: String) -> String? {
    do {
        _ = try Budget.parse(text, file: "budget.yaml")
        return nil
    } catch {
        return "\(error)"
    }
}

@Test(arguments: [
    ("500 nested mappings", (0..<500).map { String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n") + " 1\n", "budget.yaml:33"),
    ("100k [", "default: " + String(repeating: "[", count: 100_000) + "\n", "budget.yaml:1"),
    ("flow over lines", "default:\n" + String(repeating: "  {a:\n", count: 40), "budget.yaml:32"),
    ("a sequence of sequences", "default: 1\n" + String(repeating: "- ", count: 40) + "x\n", "budget.yaml:2"),
])
func aBudgetNestedTooDeepIsRefusedBeforeTheYAMLParser(what: String, text: String, place: String) throws {
    let e = try #require(budgetError(text), "\(what) was accepted")
    #expect(e.hasPrefix(place + ": ") && e.contains("nested more than"), "\(what): \(e)")
}

@Test func aBudgetLargerThanABudgetCanBeIsRefused() throws {
    let e = try #require(budgetError("# " + String(repeating: "x", count: BudgetText.maxBytes) + "\n"))
    #expect(e.hasPrefix("budget.yaml: ") && e.contains("bytes"), "\(e)")
}

@Test func budgetsThatNestAsBudgetsDoAndQuoteBracketsStillParse() throws {
    let b = try Budget.parse("""
        default: {bytes: 1MiB, wasted: {percent: "5%"}}
        recipes:
          "it's [a] recipe":
            steps:
              "RUN echo '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['":  # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
                vm-allocated: {bytes: 64MiB}
        """, file: "budget.yaml")
    #expect(b.recipes["it's [a] recipe"]?.steps.count == 1)
}

@Test func percentAndBytesPastWhatALimitCanBeAreRefused() throws {
    let p = try #require(budgetError("default:\n  percent: 1e20%\n"))
    #expect(p.hasPrefix("budget.yaml:2:12") && p.contains("more than a limit can be"), "\(p)")
    let b = try #require(budgetError("default:\n  bytes: 18446744073709551615\n"))
    #expect(b.hasPrefix("budget.yaml:2:10") && b.contains("more than a limit can be"), "\(b)")
    #expect(try Budget.parse("default: {percent: 1000000%, bytes: 1024T}\n", file: "b").defaults.all == SizeLimit(bytes: 1 << 50, percent: 1_000_000))
}

@Test func theAllowedGrowthSaturatesInsteadOfTrapping() {
    let huge = SizeLimit(bytes: .max, percent: 1e30)
    #expect(huge.allowedBytes(from: .max) == .max)
    let c = SizeGate.check(recipe: "t", step: nil, figure: .compressed, baseline: .max, current: .max, limit: huge)
    #expect(c.allowedGrowth == .max && !c.overBudget)
    #expect(SizeLimit(percent: 50).allowedBytes(from: 1001) == 500)
}
