import Foundation
import Host
import RecipePlan

/// An earlier stage of a multi-stage recipe, built on the container side only: its pass, whose
/// top layer holds the stage's files, and the stage's last key (what a `COPY --from` of it is
/// keyed by).
final class StageBuild {
    let pass: ContainerPass
    let key: String
    /// What each step of the stage cost (`BuildReport.stageSteps`).
    let steps: [BuildReport.StepReport]

    init(pass: ContainerPass, key: String, steps: [BuildReport.StepReport]) {
        self.pass = pass
        self.key = key
        self.steps = steps
    }

    /// Runs `body` with the stage's files as a folder: a scratch layer of the driver on the
    /// stage's top layer, removed after (on Ctrl-C too).
    func withRoot<T>(_ body: (_ root: String) throws -> T) throws -> T {
        let scratch = "copy-from-\(UUID().uuidString.lowercased())"
        let driver = pass.driver
        let token = Cleanup.register("remove the scratch layer \(scratch)") { try? driver.remove(scratch) }
        defer {
            try? driver.remove(scratch)
            Cleanup.unregister(token)
        }
        return try body(try driver.prepare(scratch, parent: pass.top))
    }
}

// The stages before the target: only those it copies from (and those they copy from) are
// built, in order, on the container side; the target alone becomes the images.
extension Builder {
    func buildStages(in cache: BuildCache, remote: RemoteCache?) throws -> [Int: StageBuild] {
        var built: [Int: StageBuild] = [:]
        for i in recipe.neededStages { built[i] = try buildStage(i, in: cache, remote: remote, built: built) }
        return built
    }

    /// A stage's steps are taken from and stored into the remote cache as the target's are.
    func buildStage(_ i: Int, in cache: BuildCache, remote: RemoteCache?, built: [Int: StageBuild]) throws -> StageBuild {
        let stage = recipe.stages[i]
        let sub = Builder(recipe: stage, options: options, events: events)
        sub.images = images
        sub.packages = packages
        let label = "stage \(stage.stageName ?? String(i))"
        let base = try BuildError.naming("\(stage.baseLocation): making the base of \(label)") { try sub.prepareBase(in: cache) }
        let plan = try BuildPlan.make(stage, baseKey: base.key + epochKey, stageKeys: built.mapValues(\.key), imageKeys: imageKeys)
        let pass = try ContainerPass(driver: options.driver.rawValue, cache: cache, noCache: options.noCache,
                                     sourceDateEpoch: sourceDateEpoch, events: events)
        pass.remote = remote
        // The base's capture goes on beside the stage's first steps.
        if let (layout, image) = base.image {
            _ = try pass.base(image: image, layout: layout, rootSeconds: 0)
        } else {
            try pass.startBase(key: plan.rootKey, root: base.root.path, early: base.root.takeEarly, description: base.description, rootSeconds: 0)
        }
        let steps = Result { try stageSteps(plan, of: sub, label: label, on: pass, remote: remote, built: built) }
        let captured = Result { if base.image == nil { _ = try BuildError.naming("\(stage.baseLocation): capturing the base of \(label)") { try pass.finishBase() } } }
        let reports = try steps.get()
        try captured.get()
        return StageBuild(pass: pass, key: plan.lastKey, steps: reports)
    }

    /// A stage's steps that change files, each on the container side.
    func stageSteps(_ plan: BuildPlan, of sub: Builder, label: String, on pass: ContainerPass, remote: RemoteCache?,
                    built: [Int: StageBuild]) throws -> [BuildReport.StepReport] {
        var config = StepConfig()
        var reports: [BuildReport.StepReport] = []
        for p in plan.steps {
            config.apply(p.step.instruction, environment: p.step.environment)
            var r = BuildReport.StepReport(index: p.index, instruction: p.step.text, location: p.step.location.description,
                                           target: p.step.target.rawValue, key: p.key, changesFiles: p.step.instruction.changesFiles,
                                           stage: stageLabel(p.step.stage))
            defer { reports.append(r) }
            guard p.step.instruction.changesFiles, p.step.target.includes(.container) else { continue }
            try pass.checkBase()
            events.stepStarted(index: p.index, of: plan.steps.count, target: label, text: p.step.text)
            let m = try BuildError.naming("\(p.step.location): building \(label): \(p.step.text)") {
                try storing(p.step, in: remote) {
                    try pass.step(key: p.key, text: p.step.text) { root in
                        try sub.perform(p.step, in: LocalRoot(root: root), side: .container, config: config, plan: plan, stages: built, onOutput: onOutput)
                    }
                }
            }
            r.container = m
            events.stepFinished(index: p.index, target: label, measure: m)
        }
        return reports
    }

    /// A stage's name in the report (its number when it has none); nil in a recipe of one stage.
    func stageLabel(_ i: Int) -> String? {
        guard recipe.stages.count > 1, recipe.stages.indices.contains(i) else { return nil }
        return recipe.stages[i].stageName ?? String(i)
    }

    /// `COPY --from=IMAGE`: the sources are paths in the image's root (made now when no side
    /// made it yet), copied as a stage's files are.
    func copyFromImage(_ source: ImageSource, _ s: Step, sources: [String], in disk: Workspace, destination: String,
                       chown: String?, chmod: String?) throws {
        guard let image = images[source.reference] else { throw BuildError.invalid("\(s.location): COPY --from=\(source.reference): the image was not found") }
        let root = try image.root.path()
        let copy = ContextCopy(context: root, ignore: ContextIgnore(patterns: []), location: s.location)
        try disk.copy(copy, sources: sources, destination: destination, chown: chown, chmod: chmod, add: false)
    }

    /// `COPY --from=STAGE`: the sources are paths in the stage's files, copied as context files
    /// are (owners 0:0 unless --chown, modes kept unless --chmod), to either image.
    func copyFromStage(_ stage: StageBuild?, _ s: Step, sources: [String], in disk: Workspace, destination: String,
                       chown: String?, chmod: String?) throws {
        guard let stage else { throw BuildError.invalid("\(s.location): COPY --from: its stage was not built") }
        try stage.withRoot { root in
            let copy = ContextCopy(context: root, ignore: ContextIgnore(patterns: []), location: s.location)
            try disk.copy(copy, sources: sources, destination: destination, chown: chown, chmod: chmod, add: false)
        }
    }
}
