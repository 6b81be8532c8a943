import Foundation
import Host
import ImageBuild

/// A size figure the gate compares, for a step and for the whole image.
public enum GateFigure: String, CaseIterable, Codable, Sendable, Comparable {
    /// OCI: the layer blob as stored (gzip); the image: its layers summed.
    case compressed
    /// OCI: the layer tar; the image: its tars summed.
    case uncompressed
    /// VM: guest bytes the step's qcow2 overlay allocates; the image: the flattened disk's.
    case vmAllocated = "vm-allocated"
    /// Bytes the image carries but does not use (`BuildReport.Waste`).
    case wasted
    /// The image only, from a report built with `--baseline`, and checked only where the budget
    /// sets its limit: the compressed layers a machine running the baseline build pulls, and the
    /// qcow2 of the disk's clusters that differ (`UpdateDelta`), each from nothing.
    case updateContainer = "update-container"
    case updateVM = "update-vm"

    public static func < (a: GateFigure, b: GateFigure) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    func value(container c: BuildReport.Measure?, vm v: BuildReport.Measure?) -> UInt64? {
        switch self {
        case .compressed: return c?.layerCompressedBytes
        case .uncompressed: return c?.layerUncompressedBytes
        case .vmAllocated: return v?.qcow2AllocatedBytes
        case .wasted: return c?.wasted?.total
        case .updateContainer, .updateVM: return nil
        }
    }

    /// The update figures of a report built against a baseline.
    func value(update u: UpdateDelta?) -> UInt64? {
        switch self {
        case .updateContainer: return u?.containerBytes
        case .updateVM: return u?.vmBytes
        default: return nil
        }
    }

    func value(totals t: BuildReport.Totals) -> UInt64? {
        switch self {
        case .compressed: return t.imageCompressedBytes
        case .uncompressed: return t.imageUncompressedBytes
        case .vmAllocated: return t.vmFlattenedAllocatedBytes
        case .wasted: return t.wasted?.total
        case .updateContainer, .updateVM: return nil
        }
    }
}

/// How a step of the report relates to the baseline's steps.
public enum StepStatus: String, Codable, Sendable {
    /// The same instruction in both (perhaps at another index).
    case same
    /// An instruction that took the place of another one (the baseline's is `baselineInstruction`).
    case changed
    /// Only in the report.
    case new
    /// Only in the baseline.
    case removed
}

/// One step (or the base, or the finalisation) of either report, paired with its counterpart.
public struct StepPairing: Codable, Equatable, Sendable {
    /// The index in the report (nil for a removed step); the base is 0, the finalisation
    /// the number of steps + 1.
    public var index: Int?
    public var baselineIndex: Int?
    public var instruction: String
    /// For a changed step, what the baseline ran there.
    public var baselineInstruction: String?
    public var status: StepStatus
}

/// One figure of one step or of the image, compared with the baseline against its limit.
public struct GateCheck: Codable, Equatable, Sendable {
    public var recipe: String
    /// Nil for the image's totals.
    public var step: StepPairing?
    public var figure: GateFigure
    /// Nil for a new step (counted as 0) or a removed one.
    public var baseline: UInt64?
    public var current: UInt64?
    public var growth: Int64
    /// Percent of the baseline value; nil when the baseline is 0 or absent.
    public var relativeGrowth: Double?
    public var limit: SizeLimit
    /// The growth the limit allows from this baseline.
    public var allowedGrowth: UInt64
    public var overBudget: Bool
    /// For a breach, the files that grew its step (or the image) the most, when the layouts
    /// were at hand (`SizeGate.explain`).
    public var contributors: [ImageDiff.FileChange]? = nil

    /// "step 5 `RUN ...` (new)" or "image".
    public var subject: String {
        guard let s = step else { return "image" }
        let name = s.index.map { $0 == 0 ? "base" : "step \($0)" } ?? "step \(s.baselineIndex ?? 0) of the baseline"
        var text = "\(name) `\(s.instruction)`"
        switch s.status {
        case .same: break
        case .new: text += " (new)"
        case .removed: text += " (removed)"
        case .changed: text += " (was `\(s.baselineInstruction ?? "")`)"
        }
        return text
    }

    /// What a failure says: the recipe, the step, the figure, the growth and the limit.
    public var message: String {
        let from = baseline.map(ByteCount.format) ?? "none"
        let to = current.map(ByteCount.format) ?? "none"
        let rel = relativeGrowth.map { ", \(GateFormat.signed($0))%" } ?? ""
        let top = contributors.map { "; grew most: " + $0.map(\.contribution).joined(separator: ", ") } ?? ""
        return "\(recipe): \(subject): \(figure.rawValue) grew by \(GateFormat.signedBytes(growth))\(rel) (\(from) -> \(to)); "
            + "limit \(limit.description) allows \(ByteCount.format(allowedGrowth))\(top)"
    }
}

/// The gate's verdict on a report against a baseline.
public struct GateResult: Codable, Equatable, Sendable {
    public var recipe: String
    public var report: String
    public var baseline: String
    public var steps: [StepPairing]
    public var checks: [GateCheck]
    /// What makes the comparison less sure without failing it: the two reports made on
    /// different hosts or versions (`ProvenanceWarnings`).
    public var warnings: [String] = []
    public var breaches: [GateCheck] { checks.filter(\.overBudget) }
    public var withinBudget: Bool { breaches.isEmpty }

    enum CodingKeys: String, CodingKey { case recipe, report, baseline, steps, checks, warnings, breaches, withinBudget }

    public init(recipe: String, report: String, baseline: String, steps: [StepPairing], checks: [GateCheck]) {
        self.recipe = recipe
        self.report = report
        self.baseline = baseline
        self.steps = steps
        self.checks = checks
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(recipe: try c.decode(String.self, forKey: .recipe), report: try c.decode(String.self, forKey: .report),
                  baseline: try c.decode(String.self, forKey: .baseline), steps: try c.decode([StepPairing].self, forKey: .steps),
                  checks: try c.decode([GateCheck].self, forKey: .checks))
        warnings = try c.decodeIfPresent([String].self, forKey: .warnings) ?? []
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(recipe, forKey: .recipe)
        try c.encode(report, forKey: .report)
        try c.encode(baseline, forKey: .baseline)
        try c.encode(steps, forKey: .steps)
        try c.encode(checks, forKey: .checks)
        try c.encode(warnings, forKey: .warnings)
        try c.encode(breaches.count, forKey: .breaches)
        try c.encode(withinBudget, forKey: .withinBudget)
    }
}

/// Compares a build report with a baseline report of the same recipe, per step and for the
/// image, against a budget.
///
/// Steps are paired by what they are, not by where they are: steps that change files by their
/// instruction text and target, as the longest common subsequence of the two lists (so an
/// inserted step is new and the ones after it still pair with themselves); where one or more
/// steps of the baseline gave way to as many others, they pair as changed. Metadata steps (ENV,
/// LABEL, ...) add no bytes and pair by text wherever they stand, so reordering them changes
/// nothing. The base and the finalisation always pair with each other.
public enum SizeGate {
    public static func compare(report: BuildReport, baseline: BuildReport, budget: Budget,
                               reportPath: String = "report.json", baselinePath: String = "baseline.json") -> GateResult {
        let recipe = report.recipe
        let pairs = pair(report: report, baseline: baseline)
        var checks: [GateCheck] = []
        for (p, cur, old) in pairs {
            for f in GateFigure.allCases {
                let now = cur.flatMap { f.value(container: $0.container, vm: $0.vm) }
                let was = old.flatMap { f.value(container: $0.container, vm: $0.vm) }
                // A paired step whose figure one side lacks (an older report, another target)
                // has nothing to compare.
                if p.status == .same || p.status == .changed { guard now != nil, was != nil else { continue } }
                guard now != nil || was != nil else { continue }
                let instruction = p.status == .removed ? (p.baselineInstruction ?? p.instruction) : p.instruction
                let limit = budget.limit(recipe: recipe, step: (p.index ?? p.baselineIndex ?? 0, instruction), figure: f)
                checks.append(check(recipe: recipe, step: p, figure: f, baseline: was, current: now, limit: limit))
            }
        }
        for f in GateFigure.allCases {
            guard let now = f.value(totals: report.totals), let was = f.value(totals: baseline.totals) else { continue }
            checks.append(check(recipe: recipe, step: nil, figure: f, baseline: was, current: now,
                                limit: budget.limit(recipe: recipe, step: nil, figure: f)))
        }
        for f in [GateFigure.updateContainer, .updateVM] where budget.setsImageLimit(recipe: recipe, figure: f) {
            guard let now = f.value(update: report.update) else { continue }
            checks.append(check(recipe: recipe, step: nil, figure: f, baseline: nil, current: now,
                                limit: budget.limit(recipe: recipe, step: nil, figure: f)))
        }
        var result = GateResult(recipe: recipe, report: reportPath, baseline: baselinePath, steps: pairs.map(\.0), checks: checks)
        result.warnings = ProvenanceWarnings.compare(report.provenance, baseline.provenance, reportPath: reportPath, baselinePath: baselinePath)
        return result
    }

    static func check(recipe: String, step: StepPairing?, figure: GateFigure, baseline: UInt64?, current: UInt64?, limit: SizeLimit) -> GateCheck {
        let from = baseline ?? 0, to = current ?? 0
        let growth = Int64(clamping: to) - Int64(clamping: from)
        let allowed = limit.allowedGrowth(from: from)
        return GateCheck(recipe: recipe, step: step, figure: figure, baseline: baseline, current: current, growth: growth,
                         relativeGrowth: from > 0 ? Double(growth) * 100 / Double(from) : nil,
                         limit: limit, allowedGrowth: limit.allowedBytes(from: from), overBudget: Double(growth) > allowed)
    }

    /// What a step is measured by: its two sides.
    typealias Sides = (container: BuildReport.Measure?, vm: BuildReport.Measure?)

    /// The steps of both reports, paired, in the report's order (removed steps where they stood).
    static func pair(report: BuildReport, baseline: BuildReport) -> [(StepPairing, Sides?, Sides?)] {
        var out: [(StepPairing, Sides?, Sides?)] = []
        out.append((StepPairing(index: 0, baselineIndex: 0, instruction: "base: \(report.base.description)",
                                baselineInstruction: report.base.description == baseline.base.description ? nil : "base: \(baseline.base.description)",
                                status: report.base.description == baseline.base.description ? .same : .changed),
                    (report.base.container, report.base.vm), (baseline.base.container, baseline.base.vm)))

        let newFile = report.steps.filter(\.changesFiles), oldFile = baseline.steps.filter(\.changesFiles)
        var rows: [(StepPairing, Sides?, Sides?)] = []
        for op in align(oldFile.map(Self.identity), newFile.map(Self.identity)) {
            switch op {
            case let .both(o, n):
                rows.append((StepPairing(index: newFile[n].index, baselineIndex: oldFile[o].index, instruction: newFile[n].instruction, status: .same),
                             sides(newFile[n]), sides(oldFile[o])))
            case let .changed(o, n):
                rows.append((StepPairing(index: newFile[n].index, baselineIndex: oldFile[o].index, instruction: newFile[n].instruction,
                                         baselineInstruction: oldFile[o].instruction, status: .changed),
                             sides(newFile[n]), sides(oldFile[o])))
            case let .new(n):
                rows.append((StepPairing(index: newFile[n].index, instruction: newFile[n].instruction, status: .new), sides(newFile[n]), nil))
            case let .removed(o):
                rows.append((StepPairing(baselineIndex: oldFile[o].index, instruction: oldFile[o].instruction,
                                         baselineInstruction: oldFile[o].instruction, status: .removed), nil, sides(oldFile[o])))
            }
        }
        rows += pairMetadata(report: report.steps.filter { !$0.changesFiles }, baseline: baseline.steps.filter { !$0.changesFiles })
        out += inReportOrder(rows)

        if report.finalisation != nil || baseline.finalisation != nil {
            let last = afterLast(report.steps)
            let status: StepStatus = report.finalisation == nil ? .removed : baseline.finalisation == nil ? .new : .same
            out.append((StepPairing(index: status == .removed ? nil : last, baselineIndex: status == .new ? nil : afterLast(baseline.steps),
                                    instruction: "finalisation: \(report.finalisation?.description ?? baseline.finalisation?.description ?? "")", status: status),
                        report.finalisation.map { ($0.container, $0.vm) }, baseline.finalisation.map { ($0.container, $0.vm) }))
        }
        return out
    }

    /// The finalisation's index: after the last step (a report's indices are whatever its file
    /// says, `Int.max` included).
    static func afterLast(_ steps: [BuildReport.StepReport]) -> Int {
        let last = steps.map(\.index).max() ?? 0
        return last == .max ? last : last + 1
    }

    static func identity(_ s: BuildReport.StepReport) -> String { "\(s.target)\n\(s.instruction)" }
    static func sides(_ s: BuildReport.StepReport) -> Sides { (s.container, s.vm) }

    /// Metadata steps: by text, wherever they stand; of equal ones, the first unpaired.
    static func pairMetadata(report: [BuildReport.StepReport], baseline: [BuildReport.StepReport]) -> [(StepPairing, Sides?, Sides?)] {
        var waiting: [String: [Int]] = [:]
        for (i, s) in baseline.enumerated().reversed() { waiting[identity(s), default: []].append(i) }
        var rows: [(StepPairing, Sides?, Sides?)] = []
        var paired = Set<Int>()
        for s in report {
            if let i = waiting[identity(s)]?.popLast() {
                paired.insert(i)
                rows.append((StepPairing(index: s.index, baselineIndex: baseline[i].index, instruction: s.instruction, status: .same), sides(s), sides(baseline[i])))
            } else {
                rows.append((StepPairing(index: s.index, instruction: s.instruction, status: .new), sides(s), nil))
            }
        }
        for (i, s) in baseline.enumerated() where !paired.contains(i) {
            rows.append((StepPairing(baselineIndex: s.index, instruction: s.instruction, baselineInstruction: s.instruction, status: .removed), nil, sides(s)))
        }
        return rows
    }

    /// The rows in the report's order; a removed step just after the report step that comes
    /// last among those paired with an earlier baseline step (sorting once, not searching per row).
    static func inReportOrder(_ rows: [(StepPairing, Sides?, Sides?)]) -> [(StepPairing, Sides?, Sides?)] {
        let paired = rows.compactMap { r in r.0.index.flatMap { i in r.0.baselineIndex.map { ($0, i) } } }.sorted { $0.0 < $1.0 }
        var latest: [Int] = []
        for p in paired { latest.append(max(latest.last ?? 0, p.1)) }
        func order(_ p: StepPairing) -> (Double, Int) {
            if let i = p.index { return (Double(i), p.baselineIndex ?? -1) }
            let b = p.baselineIndex ?? 0
            var lo = 0, hi = paired.count
            while lo < hi { let mid = (lo + hi) / 2; if paired[mid].0 < b { lo = mid + 1 } else { hi = mid } }
            return (Double(lo > 0 ? latest[lo - 1] : 0) + 0.5, b)
        }
        return rows.map { (order($0.0), $0) }.sorted { $0.0 < $1.0 }.map(\.1)
    }

    enum Alignment: Equatable {
        case both(Int, Int)
        case changed(Int, Int)
        case new(Int)
        case removed(Int)
    }

    /// Old and new paired in order: equal elements where they are common (`commonPairs`);
    /// between two common elements, as many old and new ones as both have pair as changed, the
    /// rest are removed or new.
    static func align(_ old: [String], _ new: [String]) -> [Alignment] {
        var out: [Alignment] = []
        var i = 0, j = 0
        func gap(to o: Int, _ n: Int) {
            let k = min(o - i, n - j)
            for t in 0..<k { out.append(.changed(i + t, j + t)) }
            for r in (i + k)..<o { out.append(.removed(r)) }
            for r in (j + k)..<n { out.append(.new(r)) }
        }
        for (o, n) in commonPairs(old, new) {
            gap(to: o, n)
            out.append(.both(o, n))
            (i, j) = (o + 1, n + 1)
        }
        gap(to: old.count, new.count)
        return out
    }

    /// Past this many cells (old × new) a longest common subsequence's table is not made.
    static let exactCells = 1 << 20

    /// Indices of equal elements of `old` and `new`, increasing in both. A longest common
    /// subsequence where its table is small; past that, in time n log n: the common head and
    /// tail, then the longest chain of occurrences paired by rank (the k-th of a text in old with
    /// its k-th in new), with the small gaps between the chain's links done exactly.
    static func commonPairs(_ old: [String], _ new: [String]) -> [(Int, Int)] {
        var (lo, hiOld, hiNew) = (0, old.count, new.count)
        if old.count * new.count <= exactCells { return exactPairs(old, new, 0..<hiOld, 0..<hiNew) }
        while lo < hiOld, lo < hiNew, old[lo] == new[lo] { lo += 1 }
        while hiOld > lo, hiNew > lo, old[hiOld - 1] == new[hiNew - 1] { hiOld -= 1; hiNew -= 1 }
        var pairs = (0..<lo).map { ($0, $0) }
        var from = (lo, lo)
        for a in rankedChain(old, new, lo..<hiOld, lo..<hiNew) + [(hiOld, hiNew)] {
            if (a.0 - from.0) * (a.1 - from.1) <= exactCells >> 4 { pairs += exactPairs(old, new, from.0..<a.0, from.1..<a.1) }
            pairs.append(a)
            from = (a.0 + 1, a.1 + 1)
        }
        pairs.removeLast()
        return pairs + (0..<(old.count - hiOld)).map { (hiOld + $0, hiNew + $0) }
    }

    /// The longest common subsequence of two ranges, by its table.
    static func exactPairs(_ old: [String], _ new: [String], _ ro: Range<Int>, _ rn: Range<Int>) -> [(Int, Int)] {
        let n = ro.count, m = rn.count
        guard n > 0, m > 0 else { return [] }
        var lcs = [[Int32]](repeating: [Int32](repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                lcs[i][j] = old[ro.lowerBound + i] == new[rn.lowerBound + j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        var out: [(Int, Int)] = []
        var i = 0, j = 0
        while i < n, j < m {
            if old[ro.lowerBound + i] == new[rn.lowerBound + j] {
                out.append((ro.lowerBound + i, rn.lowerBound + j))
                i += 1
                j += 1
            } else if lcs[i][j + 1] >= lcs[i + 1][j] {
                j += 1
            } else {
                i += 1
            }
        }
        return out
    }

    /// The k-th occurrence of a text in the old range paired with its k-th in the new range, and
    /// of those pairs the longest chain increasing in both (patience sorting, n log n).
    static func rankedChain(_ old: [String], _ new: [String], _ ro: Range<Int>, _ rn: Range<Int>) -> [(Int, Int)] {
        var places: [String: [Int]] = [:]
        for j in rn.reversed() { places[new[j], default: []].append(j) }
        var candidates: [(Int, Int)] = []
        for i in ro { if let j = places[old[i]]?.popLast() { candidates.append((i, j)) } }
        var tails: [Int] = [], previous = [Int](repeating: -1, count: candidates.count)
        for (c, pair) in candidates.enumerated() {
            var lo = 0, hi = tails.count
            while lo < hi { let mid = (lo + hi) / 2; if candidates[tails[mid]].1 < pair.1 { lo = mid + 1 } else { hi = mid } }
            if lo > 0 { previous[c] = tails[lo - 1] }
            if lo == tails.count { tails.append(c) } else { tails[lo] = c }
        }
        var chain: [(Int, Int)] = []
        var c = tails.last ?? -1
        while c >= 0 { chain.append(candidates[c]); c = previous[c] }
        return chain.reversed()
    }
}

/// Numbers as the gate prints them.
public enum GateFormat {
    public static func number(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(format: "%.1f", v)
    }

    public static func signed(_ v: Double) -> String { (v >= 0 ? "+" : "") + String(format: "%.1f", v) }

    public static func signedBytes(_ v: Int64) -> String {
        (v < 0 ? "-" : "+") + ByteCount.format(v.magnitude)
    }
}
