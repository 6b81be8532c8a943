import Foundation
import Layers
import OCI
import RecipePlan

/// What `imgbench plan` shows: every stage's steps with their keys, and whether the cache holds
/// each step for each side that builds it, found without building, locking or writing anything.
/// A COPY source that matches no file is shown (`PlannedStep.missing`), not refused.
public struct PlanPreview: Sendable {
    /// Whether the cache holds a step: nil where the side does not build it (a metadata step, a
    /// step for the other image only, the VM side of a stage before the target).
    public struct Hits: Sendable, Equatable {
        public var container: Bool?
        public var vm: Bool?
    }

    public struct Stage: Sendable {
        public var recipe: Recipe
        public var plan: BuildPlan
        /// The base's key, or why it cannot be known here (the keys then stand for that base unknown).
        public var baseKey: String?
        public var baseProblem: String?
        /// Whether a build of the target builds this stage (the target, and the stages it copies from).
        public var built: Bool
        public var base: Hits
        public var steps: [Hits]
    }

    /// The stages in order; `target` is the one built into the images.
    public var stages: [Stage]
    public var target: Int

    /// `cache`: the build cache folder; `sourceDateEpoch` as the build would use it.
    public static func make(_ recipe: Recipe, cache: String, sourceDateEpoch: Int?) throws -> PlanPreview {
        let all = recipe.stages.isEmpty ? [recipe] : recipe.stages
        // A stage the target is built FROM is built as the target's first steps.
        var needed = Set(recipe.neededStages + [recipe.stageIndex]), parent = recipe.parentStage
        while let p = parent, needed.insert(p).inserted { parent = all[p].parentStage }
        let epoch = Builder.epochKey(sourceDateEpoch ?? CaptureOptions.environmentEpoch.map { Int($0) })
        var stages: [Stage] = [], keys: [Int: String] = [:]
        for (i, stage) in all.enumerated() {
            let s = try preview(stage, cache: cache, epoch: epoch, stageKeys: keys, vm: i == recipe.stageIndex, built: needed.contains(i))
            keys[i] = s.plan.lastKey
            stages.append(s)
        }
        return PlanPreview(stages: stages, target: recipe.stageIndex)
    }

    /// One stage's plan and hits; the VM side only for the target.
    static func preview(_ stage: Recipe, cache: String, epoch: String, stageKeys: [Int: String], vm: Bool, built: Bool) throws -> Stage {
        var baseKey: String?, problem: String?
        do { baseKey = try PlanPreview.baseKey(stage, cache: cache) + epoch } catch { problem = "\(error)" }
        var imageKeys: [String: String] = [:]
        for s in stage.steps {
            guard let source = s.copyFromImage else { continue }
            var r = stage
            (r.base, r.baseReference) = (source.base, source.reference)
            imageKeys[source.reference] = try? PlanPreview.baseKey(r, cache: cache)
        }
        let plan = try BuildPlan.make(stage, baseKey: baseKey ?? "unknown", missingSources: .shown, stageKeys: stageKeys, imageKeys: imageKeys)
        let known = baseKey != nil
        let vmFolder = VMPass.folder(cache: cache, settings: stage.vm)
        let vmHas = { (key: String) in known && VMPass.checkLink(in: vmFolder, key: key, parent: nil) == .valid }
        // An OCI layout's layers are the container side's base as they are.
        let ociBase = switch stage.base {
        case .ociLayout, .registry, .local: true
        default: LocalImages.find(RecipeParser.storeName(stage.baseReference), cache: cache) != nil
        }
        let base = Hits(container: known && (ociBase || hasLayer(plan.rootKey, cache: cache)), vm: vm ? vmHas(plan.rootKey) : nil)
        let steps = plan.steps.map { p -> Hits in
            let s = p.step, files = s.instruction.changesFiles, held = known && p.missing.isEmpty
            return Hits(container: files && s.target.includes(.container) ? held && hasLayer(p.key, cache: cache) : nil,
                        vm: vm && files && s.target.includes(.vm) ? held && vmHas(p.key) : nil)
        }
        return Stage(recipe: stage, plan: plan, baseKey: baseKey, baseProblem: problem, built: built, base: base, steps: steps)
    }

    /// The key the base phase gives the base (`Builder.prepareBase`), without making it.
    static func baseKey(_ recipe: Recipe, cache: String) throws -> String {
        switch recipe.base {
        case .scratch, .ociLayout: break
        default:
            if !recipe.baseReference.contains("@"), let image = LocalImages.find(RecipeParser.storeName(recipe.baseReference), cache: cache) {
                return image.baseKey
            }
        }
        switch recipe.base {
        case let .local(name):
            throw BuildError.invalid("FROM \(recipe.baseReference): no image \(name) in the local image store")
        case let .debian(suite, variant, slim): return try DebianBase(suite: suite, variant: variant, slim: slim).key
        case .scratch: return "scratch"
        case let .ociLayout(path, tag):
            let full = path.hasPrefix("/") ? path : "\(recipe.context)/\(path)"
            return try ImageLayout(opening: full).image(tag: tag).manifestDescriptor.digest.description
        case let .registry(reference):
            // A tag is resolved by asking the registry, which a plan does not do.
            guard let digest = reference.digest else {
                throw BuildError.invalid("FROM \(reference): a tag is resolved when the build runs; the keys are known for FROM REPO@sha256:... only")
            }
            return digest.description
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
