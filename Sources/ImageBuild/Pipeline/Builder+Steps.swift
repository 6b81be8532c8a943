import Foundation
import Host
import RecipePlan

/// The sides of a build after the base root: the container side (its base layer, then each step
/// in a writable root of the storage driver) and the VM side (its base disk, each step on a new
/// overlay, then the finalisation that makes the disk bootable). They share nothing but the base
/// root, the cache and the package cache, so they run at the same time (`BuildSides`), unless
/// `--serial` asks for one after the other. A cached step is a hit and does not run.
extension Builder {
    func buildSides(_ base: Base, seconds: Double, into state: inout State) throws {
        startConfig(base, into: &state)
        // The configuration each step runs with: the metadata steps before it applied, in order.
        var configs: [StepConfig] = []
        for p in state.plan.steps {
            state.config.apply(p.step.instruction, environment: p.step.environment)
            configs.append(state.config)
        }
        state.container?.sharesMachine = sidesAtOnce(state)
        let snapshot = state
        let sides = BuildSides(serial: !sidesAtOnce(state))
        let (c, v) = try sides.run({ stop in
            try snapshot.container.map { try self.containerSide($0, base: base, seconds: seconds, state: snapshot, configs: configs, stop: stop) }
        }, { stop in
            try snapshot.vm.map { try self.vmSide($0, base: base, seconds: seconds, state: snapshot, configs: configs, stop: stop) }
        })
        state.base.container = c?.base
        state.base.vm = v?.base
        state.finalisation = v?.finalisation
        state.steps = state.plan.steps.enumerated().map { i, p in
            let s = p.step
            var r = BuildReport.StepReport(index: p.index, instruction: s.text, location: s.location.description,
                                           target: s.target.rawValue, key: p.key, changesFiles: s.instruction.changesFiles,
                                           stage: stageLabel(s.stage))
            r.container = c?.steps[i]
            r.vm = v?.steps[i]
            return r
        }
    }

    /// Whether the two sides run at the same time: both are built and `--serial` was not asked for.
    func sidesAtOnce(_ state: State) -> Bool {
        state.container != nil && state.vm != nil && !options.serial
    }

    /// What a side's commands print: as it comes when the sides run one after the other; with
    /// each line marked with its side (`[vm] `) when they run at the same time, so that a log
    /// of the two reads apart.
    func output(of side: StepTarget, state: State) -> @Sendable (String) -> Void {
        guard sidesAtOnce(state) else { return onOutput }
        let lines = SideLines(prefix: "[\(side.rawValue)] ", sink: events)
        return { lines.add($0) }
    }

    /// What one side measured: its base, each step by its place in the plan, its finalisation.
    struct SideMeasures {
        var base: BuildReport.Measure
        var steps: [Int: BuildReport.Measure] = [:]
        var finalisation: BuildReport.Phase?
    }

    func containerSide(_ container: ContainerPass, base: Base, seconds: Double, state: State, configs: [StepConfig],
                       stop: BuildSides.Stop) throws -> SideMeasures {
        let (baseMeasure, steps) = try containerBase(base, seconds: seconds, on: container, state: state) {
            var steps: [Int: BuildReport.Measure] = [:]
            for (i, p) in state.plan.steps.enumerated() where p.step.target.includes(.container) {
                try stop.check()
                try container.checkBase()
                if p.step.instruction.changesFiles {
                    steps[i] = try containerStep(p, on: container, config: configs[i], state: state)
                } else {
                    container.metadata(p.step.text)
                }
            }
            return steps
        }
        return SideMeasures(base: baseMeasure, steps: steps)
    }

    func vmSide(_ vm: VMPass, base: Base, seconds: Double, state: State, configs: [StepConfig], stop: BuildSides.Stop) throws -> SideMeasures {
        var out = SideMeasures(base: try vmBase(base, seconds: seconds, on: vm, state: state))
        for (i, p) in state.plan.steps.enumerated() where p.step.target.includes(.vm) && p.step.instruction.changesFiles {
            try stop.check()
            out.steps[i] = try vmStep(p, on: vm, config: configs[i], state: state)
        }
        try stop.check()
        out.finalisation = try finalise(vm, state: state, config: configs.last ?? state.config)
        return out
    }

    /// A step that changes files, run in a writable root of the storage driver.
    func containerStep(_ p: BuildPlan.PlannedStep, on container: ContainerPass, config: StepConfig, state: State) throws -> BuildReport.Measure {
        let s = p.step, plan = state.plan, onOutput = output(of: .container, state: state)
        events.stepStarted(index: p.index, of: plan.steps.count, target: "container", text: s.text)
        let m = try countingPackages(.container) { try BuildError.naming("\(s.location): making the container layer of \(s.text)") {
            try storing(s, in: container.remote) {
                try container.step(key: p.key, text: s.text) { root in
                    try self.perform(s, in: LocalRoot(root: root), side: .container, config: config, plan: plan, stages: state.stages, onOutput: onOutput)
                }
            }
        } }
        events.stepFinished(index: p.index, target: "container", measure: m)
        return m
    }

    /// A step that changes files, run on a new overlay of the VM disk.
    func vmStep(_ p: BuildPlan.PlannedStep, on vm: VMPass, config: StepConfig, state: State) throws -> BuildReport.Measure {
        let s = p.step, plan = state.plan, onOutput = output(of: .vm, state: state)
        events.stepStarted(index: p.index, of: plan.steps.count, target: "vm", text: s.text)
        let m = try countingPackages(.vm) { try BuildError.naming("\(s.location): making the VM disk's link of \(s.text)") {
            try storing(s, in: vm.remote) {
                try vm.step(key: p.key, label: s.text) { disk in
                    try self.perform(s, in: disk, side: .vm, config: config, plan: plan, stages: state.stages, onOutput: onOutput)
                }
            }
        } }
        events.stepFinished(index: p.index, target: "vm", measure: m)
        return m
    }

    /// `body`'s measure with what `side`'s apt fetched through the package cache meanwhile (each
    /// side has its own proxy, so the two sides never count each other's).
    func countingPackages(_ side: StepTarget, _ body: () throws -> BuildReport.Measure) throws -> BuildReport.Measure {
        let before = packages?.proxy(side).current
        var m = try body()
        if let before, let now = packages?.proxy(side).current { m.packages = BuildReport.PackageTraffic(now.since(before)) }
        return m
    }

    /// `body` (a step's making), with nothing stored in the `--cache-to` registry when the step
    /// mounts a secret (`RemoteCache`).
    func storing<T>(_ s: Step, in remote: RemoteCache?, _ body: () throws -> T) throws -> T {
        guard let remote else { return try body() }
        return try remote.withoutStoring(if: s.mounts.contains { $0.kind == .secret }, body)
    }

    /// The finalisation of the VM side: kernel, initramfs, fstab and boot files.
    func finalise(_ vm: VMPass, state: State, config: StepConfig) throws -> BuildReport.Phase {
        let plan = state.plan, onOutput = output(of: .vm, state: state)
        let what = vm.settings.boot == .firmware ? "finalise: systemd, kernel, the image's service, GRUB for BIOS and UEFI" : "finalise: kernel, initramfs, fstab, boot files"
        events.stepStarted(index: plan.steps.count + 1, of: plan.steps.count, target: "vm", text: what)
        // A firmware disk's finalisation also writes the hostname, from the recipe's name (v3: the
        // ESP dated by SOURCE_DATE_EPOCH).
        let hostname = VMPass.hostname(recipe.name)
        let key = vm.settings.boot == .firmware ? BuildPlan.digest([plan.finalKey, "firmware-v3", hostname]) : plan.finalKey
        let m = try countingPackages(.vm) { try BuildError.naming("\(recipe.file): making the VM disk bootable (the finalisation link)") {
            let environment = plan.steps.last?.step.environment ?? []
            if vm.settings.boot == .firmware {
                return try vm.finaliseFirmware(key: key, environment: environment, config: config.image,
                                               hostname: hostname, sourceDateEpoch: sourceDateEpoch, onOutput: onOutput)
            }
            return try vm.finalise(key: plan.finalKey, environment: environment, onOutput: onOutput)
        } }
        events.stepFinished(index: plan.steps.count + 1, target: "vm", measure: m)
        return BuildReport.Phase(description: "make the VM disk bootable", key: key, container: nil, vm: m)
    }

    /// Carries out a step that changes files, in a workspace.
    func perform(_ s: Step, in disk: Workspace, side: StepTarget, config: StepConfig, plan: BuildPlan, stages: [Int: StageBuild],
                 onOutput: @escaping @Sendable (String) -> Void) throws {
        let copy = ContextCopy(context: recipe.context, ignore: plan.ignore, location: s.location)
        switch s.instruction {
        case let .run(cmd):
            try runStep(s, cmd, in: disk, side: side, config: config, plan: plan, stages: stages, onOutput: onOutput)
        case let .copy(srcs, dest, chown, chmod), let .add(srcs, dest, chown, chmod):
            // Several sources, here-documents counted, make the destination a folder.
            let folder = srcs.count + s.inlineFiles.count > 1 && !dest.hasSuffix("/") ? dest + "/" : dest
            if let from = s.copyFrom {
                try copyFromStage(stages[from], s, sources: srcs, in: disk, destination: folder, chown: chown, chmod: chmod)
            } else if let image = s.copyFromImage {
                try copyFromImage(image, s, sources: srcs, in: disk, destination: folder, chown: chown, chmod: chmod)
            } else if !srcs.isEmpty {
                let add = if case .add = s.instruction { true } else { false }
                let remote = s.remoteSources, local = srcs.filter { !remote.contains($0) }
                if !local.isEmpty { try disk.copy(copy, sources: local, destination: folder, chown: chown, chmod: chmod, add: add) }
                if !remote.isEmpty { try addRemote(s, sources: remote, in: disk, destination: folder, chown: chown, chmod: chmod) }
            }
            try copyInlineFiles(s, in: disk, destination: folder, chown: chown, chmod: chmod)
        default:
            break
        }
    }

    /// The files of a COPY's or ADD's here-documents: written into a private folder (mode 0664,
    /// as BuildKit makes them) and copied from there as context files are; never unpacked.
    func copyInlineFiles(_ s: Step, in disk: Workspace, destination: String, chown: String?, chmod: String?) throws {
        guard !s.inlineFiles.isEmpty else { return }
        let stage = try TemporaryFolder.make(prefix: "imgbench-heredoc")
        defer { try? FileSystem.removeTree(stage) }
        for f in s.inlineFiles {
            let path = "\(stage)/\(f.name)"
            try Data(f.content.utf8).write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.posixPermissions: 0o664], ofItemAtPath: path)
        }
        let inline = ContextCopy(context: stage, ignore: ContextIgnore(patterns: []), location: s.location)
        try disk.copy(inline, sources: s.inlineFiles.map(\.name), destination: destination, chown: chown, chmod: chmod, add: false)
    }
}
