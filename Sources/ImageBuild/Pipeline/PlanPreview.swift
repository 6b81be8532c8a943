import Foundation
import Layers
import OCI
import RecipePlan

/// What `imgbench plan` shows: the plan's steps with their keys, and whether the cache holds
/// each step for each target, found without building, locking or writing anything. A COPY
/// source that matches no file is shown (`PlannedStep.missing`), not refused.
public struct PlanPreview: Sendable {
    /// Whether the cache holds a step: nil where the target does not build it (a metadata step,
    /// or a step for the other target only).
    public struct Hits: Sendable, Equatable {
        public var container: Bool?
        public var vm: Bool?
    }

    public var plan: BuildPlan
    /// The base's key, or why it cannot be known here (the keys then stand for that base unknown).
    public var baseKey: String?
    public var baseProblem: String?
    public var base: Hits
    public var steps: [Hits]

    /// `cache`: the build cache folder; `sourceDateEpoch` as the build would use it.
    public static func make(_ recipe: Recipe, cache: String, sourceDateEpoch: Int?) throws -> PlanPreview {
        var baseKey: String?, problem: String?
        do {
            baseKey = try PlanPreview.baseKey(recipe) + Builder.epochKey(sourceDateEpoch ?? CaptureOptions.environmentEpoch.map { Int($0) })
        } catch {
            problem = "\(error)"
        }
        let plan = try BuildPlan.make(recipe, baseKey: baseKey ?? "unknown", missingSources: .shown)
        let known = baseKey != nil
        let vmFolder = VMPass.folder(cache: cache, settings: recipe.vm)
        // An OCI layout's layers are the container side's base as they are.
        let ociBase = if case .ociLayout = recipe.base { true } else { false }
        let base = Hits(container: known && (ociBase || hasLayer(plan.rootKey, cache: cache)),
                        vm: known && VMPass.checkLink(in: vmFolder, key: plan.rootKey, parent: nil) == .valid)
        let steps = plan.steps.map { p -> Hits in
            let s = p.step, files = s.instruction.changesFiles
            let held = known && p.missing.isEmpty
            return Hits(container: files && s.target.includes(.container) ? held && hasLayer(p.key, cache: cache) : nil,
                        vm: files && s.target.includes(.vm) ? held && VMPass.checkLink(in: vmFolder, key: p.key, parent: nil) == .valid : nil)
        }
        return PlanPreview(plan: plan, baseKey: baseKey, baseProblem: problem, base: base, steps: steps)
    }

    /// The key the base phase gives the base (`Builder.prepareBase`), without making it.
    static func baseKey(_ recipe: Recipe) throws -> String {
        switch recipe.base {
        case let .debian(suite, variant): return try DebianBase(suite: suite, variant: variant).key
        case .scratch: return "scratch"
        case let .ociLayout(path, tag):
            let full = path.hasPrefix("/") ? path : "\(recipe.context)/\(path)"
            return try ImageLayout(opening: full).image(tag: tag).manifestDescriptor.digest.description
        }
    }

    /// Whether the container side's cache records a layer for `key` with its blob present.
    static func hasLayer(_ key: String, cache: String) -> Bool {
        let store = "\(cache)/containers"
        guard let data = FileManager.default.contents(atPath: "\(store)/layers/\(key).json"),
              let layer = try? JSONDecoder().decode(StoredLayer.self, from: data) else { return false }
        return FileManager.default.fileExists(atPath: BlobStore(root: store).path(of: layer.descriptor.digest))
    }
}
