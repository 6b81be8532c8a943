import Foundation
import Host
import Yams

/// How much a runtime figure may get worse, and how sure the rounds must be before the gate
/// judges: `percent` of the baseline's median in the bad direction; `cv`, the largest spread of
/// either side's rounds (standard deviation over mean) still worth judging; `rounds`, the
/// fewest rounds either side needs. Each level of a budget replaces only the fields it sets.
public struct RunTolerance: Equatable, Codable, Sendable {
    public var percent: Double?
    public var cv: Double?
    public var rounds: Int?

    public init(percent: Double? = nil, cv: Double? = nil, rounds: Int? = nil) {
        self.percent = percent
        self.cv = cv
        self.rounds = rounds
    }

    /// Without a budget: 5 % worse, rounds spread at most 10 %, at least 3 rounds a side.
    public static let builtIn = RunTolerance(percent: 5, cv: 10, rounds: 3)

    func overlaid(by other: RunTolerance?) -> RunTolerance {
        RunTolerance(percent: other?.percent ?? percent, cv: other?.cv ?? cv, rounds: other?.rounds ?? rounds)
    }
}

/// The budget of the performance gate (`imgbench check RUN.json --baseline BASE.json`), a YAML
/// file shaped as the size budget:
///
/// ```yaml
/// default: {percent: 5%, cv: 10%, rounds: 3}
/// recipes:
///   mysql:
///     percent: 10%
///     workloads:
///       sysbench-oltp:
///         percent: 5%
///         figures:
///           "transactions/s": {percent: 3%}
/// ```
public struct RunBudget: Equatable, Sendable {
    public struct WorkloadBudget: Equatable, Sendable {
        public var tolerance = RunTolerance()
        public var figures: [String: RunTolerance] = [:]
        /// `file:line:column` of the workload's key.
        public var place = ""
    }

    public struct RecipeBudget: Equatable, Sendable {
        public var tolerance = RunTolerance()
        public var workloads: [String: WorkloadBudget] = [:]
    }

    public var defaults = RunTolerance()
    public var recipes: [String: RecipeBudget] = [:]

    public init() {}

    /// The tolerance of one figure of one workload of `recipe`.
    public func tolerance(recipe: String, workload: String, figure: String) -> RunTolerance {
        let r = recipes[recipe], w = r?.workloads[workload]
        return RunTolerance.builtIn.overlaid(by: defaults).overlaid(by: r?.tolerance).overlaid(by: w?.tolerance)
            .overlaid(by: w?.figures[figure])
    }

    /// A workload key of `recipe` that names no workload of either result is an error naming the
    /// key and its place, not a silent default.
    public func checkWorkloadKeys(recipe: String, workloads: Set<String>) throws {
        for (name, w) in recipes[recipe]?.workloads ?? [:] where !workloads.contains(name) {
            throw GateError.invalid(place: w.place, message: "the workload key \"\(name)\" of recipe \(recipe) matches no workload of the results ("
                                    + workloads.sorted().joined(separator: ", ") + ")")
        }
    }

    public static func load(_ path: String) throws -> RunBudget {
        try parse(try BudgetText.read(path), file: path)
    }

    public static func parse(_ text: String, file: String) throws -> RunBudget {
        var budget = RunBudget()
        guard let root = try BudgetText.compose(text, file: file) else { return budget }
        let p = BudgetParser(file: file)
        for (key, value) in try p.mapping(root, "the budget") {
            switch key {
            case "default": budget.defaults = try p.tolerance(value, extraKeys: [])
            case "recipes":
                for (name, r) in try p.mapping(value, "recipes") { budget.recipes[name] = try p.runRecipe(r, name: name) }
            default: throw p.error(value, "unknown key '\(key)' (default or recipes)")
            }
        }
        return budget
    }
}

extension BudgetParser {
    func runRecipe(_ node: Node, name: String) throws -> RunBudget.RecipeBudget {
        var rb = RunBudget.RecipeBudget()
        let keys = try mapping(node, "recipe \(name)")
        rb.tolerance = try tolerance(node, extraKeys: ["workloads"])
        for (k, v) in keys where k == "workloads" {
            let keyNodes = v.mapping.map { $0.map(\.key) } ?? []
            for ((workload, w), keyNode) in zip(try mapping(v, "workloads"), keyNodes) {
                var wb = RunBudget.WorkloadBudget(tolerance: try tolerance(w, extraKeys: ["figures"]), place: place(keyNode))
                for (fk, f) in try mapping(w, "workload \(workload)") where fk == "figures" {
                    for (figure, t) in try mapping(f, "figures") { wb.figures[figure] = try tolerance(t, extraKeys: []) }
                }
                rb.workloads[workload] = wb
            }
        }
        return rb
    }

    /// `percent`, `cv` and `rounds`; `extraKeys` are other keys the caller reads.
    func tolerance(_ node: Node, extraKeys: Set<String>) throws -> RunTolerance {
        var t = RunTolerance()
        for (k, v) in try mapping(node, "a tolerance") {
            switch k {
            case "percent": t.percent = try percentage(v, k)
            case "cv": t.cv = try percentage(v, k)
            case "rounds":
                guard let n = v.string.flatMap({ Int($0) }), (1...10_000).contains(n) else {
                    throw error(v, "rounds: '\(v.string ?? "")' is not a number of rounds (1 to 10000)")
                }
                t.rounds = n
            default:
                guard extraKeys.contains(k) else {
                    throw error(v, "unknown key '\(k)' (\((["percent", "cv", "rounds"] + extraKeys.sorted()).joined(separator: ", ")))")
                }
            }
        }
        return t
    }

    /// `5%` or `5`: a finite percentage, at most `SizeLimit.maxPercent`.
    func percentage(_ v: Node, _ key: String) throws -> Double {
        let text = v.string ?? ""
        let t = text.hasSuffix("%") ? String(text.dropLast()) : text
        guard let p = Double(t.trimmingCharacters(in: .whitespaces)), p >= 0, p.isFinite else {
            throw error(v, "\(key): '\(text)' is not a percentage (e.g. 5%)")
        }
        guard p <= SizeLimit.maxPercent else {
            throw error(v, "\(key): '\(text)' is more than a limit can be (\(GateFormat.number(SizeLimit.maxPercent))%)")
        }
        return p
    }
}
