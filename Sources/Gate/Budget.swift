import Foundation
import Host
import ImageBuild
import RuntimeSuite
import Yams

/// How much a figure may grow against the baseline: an absolute number of bytes, a percentage of
/// the baseline value, or both. The growth allowed is the larger of the limits set, so a small
/// figure may move by `bytes` and a large one by `percent`.
public struct SizeLimit: Equatable, Codable, Sendable {
    public var bytes: UInt64?
    public var percent: Double?

    /// The largest limits a budget may set: an exbibyte, and ten thousand times the baseline.
    public static let maxBytes: UInt64 = 1 << 60
    public static let maxPercent: Double = 1_000_000

    public init(bytes: UInt64? = nil, percent: Double? = nil) {
        self.bytes = bytes
        self.percent = percent
    }

    /// The limits of `other` that are set replace these.
    func overlaid(by other: SizeLimit?) -> SizeLimit {
        SizeLimit(bytes: other?.bytes ?? bytes, percent: other?.percent ?? percent)
    }

    /// Bytes of growth allowed from `baseline`.
    public func allowedGrowth(from baseline: UInt64) -> Double {
        let byPercent = percent.map { Double(baseline) * $0 / 100 }
        return max(bytes.map { Double($0) } ?? -1, byPercent ?? -1, 0)
    }

    /// The same in whole bytes, at most `UInt64.max` (a limit built in code is not bounded the
    /// way a budget file's is).
    public func allowedBytes(from baseline: UInt64) -> UInt64 {
        let allowed = allowedGrowth(from: baseline).rounded(.down)
        return allowed.isNaN ? 0 : allowed >= 0x1p64 ? .max : UInt64(allowed)
    }

    /// "1.0 MiB or 5%": what a failure message quotes.
    public var description: String {
        [bytes.map(ByteCount.format), percent.map { "\(GateFormat.number($0))%" }].compactMap { $0 }.joined(separator: " or ")
    }
}

/// The size budget of `imgbench check`: limits for every recipe, per recipe, for a recipe's whole
/// image and per step, each with optional limits of its own per figure. A YAML file:
///
/// ```yaml
/// default:                      # every recipe, step and figure
///   bytes: 1MiB
///   percent: 1%
///   wasted: {bytes: 0, percent: 0}   # one figure (compressed, uncompressed, vm-allocated, wasted,
///                                    # update-container, update-vm)
/// recipes:
///   mysql:
///     bytes: 5MiB               # this recipe's steps and image
///     image:                    # the image's totals
///       compressed: {percent: 2%}
///     steps:
///       "RUN apt-get update":   # steps whose instruction starts with this (longest match wins)
///         bytes: 50MiB
///       "7":                    # step 7
///         vm-allocated: {bytes: 64MiB}
/// ```
///
/// A limit is resolved from the built-in one outwards in: built-in, `default`, its figure, the
/// recipe, its figure, the image or the step, its figure; each level replaces only the fields
/// it sets.
public struct Budget: Equatable, Sendable {
    /// Without a budget file: growth of at most 1 MiB or 1 %, whichever is larger.
    public static let builtIn = SizeLimit(bytes: 1 << 20, percent: 1)

    /// Limits that apply at one level, to every figure and to single figures.
    public struct Scope: Equatable, Sendable {
        public var all = SizeLimit()
        public var figures: [GateFigure: SizeLimit] = [:]

        public init(all: SizeLimit = SizeLimit(), figures: [GateFigure: SizeLimit] = [:]) {
            self.all = all
            self.figures = figures
        }

        func apply(to limit: SizeLimit, _ figure: GateFigure) -> SizeLimit {
            limit.overlaid(by: all).overlaid(by: figures[figure])
        }
    }

    public enum StepSelector: Equatable, Sendable {
        case index(Int)
        case prefix(String)
    }

    public struct RecipeBudget: Equatable, Sendable {
        public var scope = Scope()
        public var image = Scope()
        /// Each step key with its limits and its place in the budget file (`file:line:column`).
        public var steps: [(selector: StepSelector, scope: Scope, place: String)] = []

        public init() {}

        public static func == (a: RecipeBudget, b: RecipeBudget) -> Bool {
            a.scope == b.scope && a.image == b.image && a.steps.map(\.selector) == b.steps.map(\.selector)
                && a.steps.map(\.scope) == b.steps.map(\.scope)
        }

        /// The step scope for a step: its index if named, else the longest instruction prefix.
        func stepScope(index: Int, instruction: String) -> Scope? {
            if let s = steps.first(where: { $0.selector == .index(index) }) { return s.scope }
            var best: (Int, Scope)?
            for s in steps {
                if case let .prefix(p) = s.selector, instruction.hasPrefix(p), p.count > (best?.0 ?? -1) { best = (p.count, s.scope) }
            }
            return best?.1
        }
    }

    public var defaults = Scope()
    public var recipes: [String: RecipeBudget] = [:]

    public init() {}

    /// The limit of `figure` for the image (step nil) or a step of `recipe`.
    public func limit(recipe: String, step: (index: Int, instruction: String)?, figure: GateFigure) -> SizeLimit {
        var l = defaults.apply(to: Budget.builtIn, figure)
        guard let r = recipes[recipe] else { return l }
        l = r.scope.apply(to: l, figure)
        if let step {
            if let s = r.stepScope(index: step.index, instruction: step.instruction) { l = s.apply(to: l, figure) }
        } else {
            l = r.image.apply(to: l, figure)
        }
        return l
    }

    /// Whether the budget names `figure` itself for the image of `recipe` (in `default`, the
    /// recipe or its `image`): the update figures are checked only then, since the built-in
    /// limit is for growth, not for a download.
    public func setsImageLimit(recipe: String, figure: GateFigure) -> Bool {
        let r = recipes[recipe]
        return [defaults.figures[figure], r?.scope.figures[figure], r?.image.figures[figure]].contains { $0 != nil }
    }

    /// Reads a budget file; errors name the file, line and column.
    public static func load(_ path: String) throws -> Budget {
        try parse(try BudgetText.read(path), file: path)
    }

    public static func parse(_ text: String, file: String) throws -> Budget {
        var budget = Budget()
        guard let root = try BudgetText.compose(text, file: file) else { return budget }
        let p = BudgetParser(file: file)
        for (key, value) in try p.mapping(root, "the budget") {
            switch key {
            case "default":
                budget.defaults = try p.scope(value, extraKeys: [])
            case "recipes":
                for (name, r) in try p.mapping(value, "recipes") { budget.recipes[name] = try p.recipe(r, name: name) }
            default:
                throw p.error(value, "unknown key '\(key)' (default or recipes)")
            }
        }
        return budget
    }
}

/// Walks the composed YAML, naming `file:line:column` in every error.
struct BudgetParser {
    let file: String

    func error(_ node: Node, _ message: String) -> GateError {
        .invalid(place: place(node), message: message)
    }

    func place(_ node: Node) -> String { "\(file):\(node.mark?.description ?? "?")" }

    /// A recipe's limits: its own, its image's, and its steps' (each key with its place).
    func recipe(_ node: Node, name: String) throws -> Budget.RecipeBudget {
        var rb = Budget.RecipeBudget()
        let keys = try mapping(node, "recipe \(name)")
        rb.scope = try scope(node, extraKeys: ["image", "steps"])
        for (k, v) in keys {
            if k == "image" { rb.image = try scope(v, extraKeys: []) }
            guard k == "steps" else { continue }
            let keyNodes = v.mapping.map { $0.map(\.key) } ?? []
            for ((sel, s), keyNode) in zip(try mapping(v, "steps"), keyNodes) {
                let selector: Budget.StepSelector = Int(sel).map { .index($0) } ?? .prefix(sel)
                rb.steps.append((selector, try scope(s, extraKeys: []), place(keyNode)))
            }
        }
        return rb
    }

    /// A mapping's entries with string keys, in the file's order.
    func mapping(_ node: Node, _ what: String) throws -> [(String, Node)] {
        guard let m = node.mapping else { throw error(node, "\(what) must be a mapping") }
        return try m.map { k, v in
            guard let key = k.string else { throw error(k, "a key of \(what) must be a string") }
            return (key, v)
        }
    }

    /// `bytes`, `percent` and per-figure limits; `extraKeys` are other keys the caller reads.
    func scope(_ node: Node, extraKeys: Set<String>) throws -> Budget.Scope {
        var s = Budget.Scope()
        var limitKeys: [(String, Node)] = []
        for (k, v) in try mapping(node, "a limit") {
            if let f = GateFigure(rawValue: k) {
                s.figures[f] = try limit(try mapping(v, "the limit of \(k)"))
            } else if k == "bytes" || k == "percent" {
                limitKeys.append((k, v))
            } else if !extraKeys.contains(k) {
                let allowed = (["bytes", "percent"] + GateFigure.allCases.map(\.rawValue) + extraKeys.sorted()).joined(separator: ", ")
                throw error(v, "unknown key '\(k)' (\(allowed))")
            }
        }
        s.all = try limit(limitKeys)
        return s
    }

    func limit(_ entries: [(String, Node)]) throws -> SizeLimit {
        var l = SizeLimit()
        for (k, v) in entries {
            guard let text = v.string else { throw error(v, "\(k) must be a value") }
            switch k {
            case "bytes":
                guard let b = ByteCount.parse(text) else { throw error(v, "bytes: '\(text)' is not a size (e.g. 512K, 10MiB, 1G)") }
                guard b <= SizeLimit.maxBytes else { throw error(v, "bytes: '\(text)' is more than a limit can be (\(ByteCount.format(SizeLimit.maxBytes)))") }
                l.bytes = b
            case "percent":
                l.percent = try percentage(v, k)
            default:
                throw error(v, "unknown key '\(k)' (bytes, percent)")
            }
        }
        return l
    }
}
