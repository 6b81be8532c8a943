import Foundation
import Host

extension Budget {
    /// Refuses a step key of `recipe` that names no step of the report or the baseline: such a
    /// key would silently leave its step on the default limits. The error names the key and its
    /// place in the budget file.
    public func checkStepKeys(recipe: String, steps: [StepPairing]) throws {
        guard let r = recipes[recipe] else { return }
        for key in r.steps where !steps.contains(where: { Budget.selector(key.selector, matches: $0) }) {
            let name: String
            switch key.selector {
            case let .index(i): name = "\"\(i)\" (a step index; the report's and the baseline's go to \(Budget.lastIndex(steps)))"
            case let .prefix(p): name = "\"\(p)\" (the beginning of an instruction)"
            }
            throw GateError.invalid(place: key.place, message: "the step key \(name) of recipe \(recipe) matches no step of the report or the baseline; "
                                    + "a step is named by its index (0 the base) or by how its instruction begins as report.json gives it, e.g. \"RUN apt-get update\"")
        }
    }

    static func selector(_ s: StepSelector, matches p: StepPairing) -> Bool {
        switch s {
        case let .index(i): return p.index == i || p.baselineIndex == i
        case let .prefix(text): return p.instruction.hasPrefix(text) || p.baselineInstruction?.hasPrefix(text) == true
        }
    }

    static func lastIndex(_ steps: [StepPairing]) -> Int {
        steps.flatMap { [$0.index, $0.baselineIndex].compactMap { $0 } }.max() ?? 0
    }
}
