import Foundation
import QcowIO

/// What a build tells whoever draws its progress.
public protocol BuildEvents: Sendable {
    func note(_ message: String)
    func stepStarted(index: Int, of total: Int, target: String, text: String)
    func stepFinished(index: Int, target: String, measure: BuildReport.Measure)
    /// Output of a running command.
    func output(_ text: String)
}

public struct BuildOptions: Sendable {
    public var output: String
    public var cache: String
    public var noCache = false
    public var targets: Set<StepTarget> = [.vm]
    public var buildArgs: [String: String] = [:]
    public var sourceDateEpoch: Int?

    public init(output: String, cache: String) {
        self.output = output
        self.cache = cache
    }

    /// `$XDG_CACHE_HOME/imgbench`, else `~/.cache/imgbench`.
    public static var defaultCache: String {
        let env = ProcessInfo.processInfo.environment
        if let x = env["XDG_CACHE_HOME"], !x.isEmpty { return "\(x)/imgbench" }
        return "\(NSHomeDirectory())/.cache/imgbench"
    }
}

/// Builds a recipe: base, then each step on each target, then the VM finalisation; writes the
/// outputs and `report.json` into the output folder only once everything succeeded.
public final class Builder {
    public let recipe: Recipe
    public let options: BuildOptions
    let events: BuildEvents

    public init(recipe: Recipe, options: BuildOptions, events: BuildEvents) {
        self.recipe = recipe
        self.options = options
        self.events = events
    }

    /// The configuration in force at a step: what its command runs with.
    struct ConfigState {
        var workdir = "/"
        var user: String?
        var shell = ["/bin/sh", "-c"]

        mutating func apply(_ i: Step.Instruction) {
            switch i {
            case let .workdir(w): workdir = w
            case let .user(u): user = u
            case let .shell(s): shell = s
            default: break
            }
        }
    }

    public func run() throws -> BuildReport {
        let started = Date()
        let fm = FileManager.default
        try fm.createDirectory(atPath: options.cache, withIntermediateDirectories: true)

        // Base.
        let baseStart = Date()
        let (baseKey, baseRoot, baseHit, baseDescription) = try prepareBase()
        let plan = try BuildPlan.make(recipe, baseKey: baseKey)
        var baseMeasure = BuildReport.Measure(seconds: Date().timeIntervalSince(baseStart), cacheHit: baseHit)
        let vm = options.targets.contains(.vm)
            ? try VMPass(settings: recipe.vm, cache: options.cache, noCache: options.noCache, events: events) : nil
        defer { vm?.cleanScratch() }
        var basePhase = BuildReport.Phase(description: baseDescription, key: plan.rootKey, container: nil, vm: nil)
        if let vm {
            var m = try vm.base(key: plan.rootKey, root: baseRoot, sourceDateEpoch: options.sourceDateEpoch)
            m.seconds += baseMeasure.seconds
            m.cacheHit = m.cacheHit && baseHit
            basePhase.vm = m
        }
        baseMeasure.seconds = Date().timeIntervalSince(baseStart)

        // Steps.
        var reports: [BuildReport.StepReport] = []
        var config = ConfigState()
        let sink = events
        let onOutput: @Sendable (String) -> Void = { sink.output($0) }
        for p in plan.steps {
            let s = p.step
            var r = BuildReport.StepReport(index: p.index, instruction: s.text, location: s.location.description,
                                           target: s.target.rawValue, key: p.key, changesFiles: s.instruction.changesFiles)
            config.apply(s.instruction)
            if let vm, s.target.includes(.vm), s.instruction.changesFiles {
                events.stepStarted(index: p.index, of: plan.steps.count, target: "vm", text: s.text)
                let cfg = config
                let m = try vm.step(key: p.key, label: s.text) { root in
                    try self.perform(s, sources: p.sources, root: root, config: cfg, plan: plan, onOutput: onOutput)
                }
                events.stepFinished(index: p.index, target: "vm", measure: m)
                r.vm = m
            }
            reports.append(r)
        }

        // Finalisation.
        var finalisation: BuildReport.Phase?
        if let vm {
            events.stepStarted(index: plan.steps.count + 1, of: plan.steps.count, target: "vm", text: "finalise: kernel, initramfs, fstab, boot files")
            let last = plan.steps.last
            let sandboxFor: (String) -> Sandbox = { root in
                Sandbox(root: root, environment: last?.step.environment ?? [], workdir: "/", user: nil)
            }
            let m = try vm.finalise(key: plan.finalKey, sandbox: sandboxFor, onOutput: onOutput)
            events.stepFinished(index: plan.steps.count + 1, target: "vm", measure: m)
            finalisation = BuildReport.Phase(description: "make the VM disk bootable", key: plan.finalKey, container: nil, vm: m)
        }

        // Outputs: written beside the old ones, swapped in when complete.
        let out = options.output
        let partial = out + ".partial"
        try? fm.removeItem(atPath: partial)
        try fm.createDirectory(atPath: partial, withIntermediateDirectories: true)
        var outputs = BuildReport.Outputs(folder: out)
        var totals = BuildReport.Totals(seconds: 0, cacheHits: 0, cacheMisses: 0)
        do {
            if let vm {
                events.note("vm: writing the chain and the flattened disk")
                let e = try vm.export(to: partial)
                outputs.vmChain = e.chain
                outputs.vmDisk = e.disk
                if fm.fileExists(atPath: "\(partial)/vm/boot/vmlinuz") {
                    outputs.kernel = "vm/boot/vmlinuz"
                    outputs.initrd = fm.fileExists(atPath: "\(partial)/vm/boot/initrd.img") ? "vm/boot/initrd.img" : nil
                    outputs.kernelCommandLine = "root=/dev/vda rw console=ttyS0"
                }
                totals.vmFlattenedAllocatedBytes = e.flattened.chain[0].allocatedBytes
                totals.vmFlattenedDiskBytes = e.flattened.chain[0].diskBytes
                totals.vmVirtualSize = e.flattened.virtualSize
            }
            let measures = [basePhase.vm, finalisation?.vm].compactMap { $0 } + reports.compactMap(\.vm)
            totals.cacheHits = measures.filter(\.cacheHit).count
            totals.cacheMisses = measures.count - totals.cacheHits
            if vm != nil {
                totals.vmSeconds = measures.map(\.seconds).reduce(0, +)
                totals.vmChainAllocatedBytes = measures.compactMap(\.qcow2AllocatedBytes).reduce(0, +)
            }
            totals.seconds = Date().timeIntervalSince(started)
            let report = BuildReport(recipe: recipe.name, recipeFile: recipe.file,
                                     targets: StepTarget.allCases.filter { $0 != .both && options.targets.contains($0) }.map(\.rawValue),
                                     startedAt: ISO8601DateFormatter().string(from: started), base: basePhase, steps: reports,
                                     finalisation: finalisation, totals: totals, outputs: outputs)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try enc.encode(report).write(to: URL(fileURLWithPath: "\(partial)/report.json"))
            let old = out + ".old"
            try? fm.removeItem(atPath: old)
            if fm.fileExists(atPath: out) { try fm.moveItem(atPath: out, toPath: old) }
            try fm.moveItem(atPath: partial, toPath: out)
            try? fm.removeItem(atPath: old)
            return report
        } catch {
            try? fm.removeItem(atPath: partial)
            throw error
        }
    }

    /// The base root folder, made (and cached) when needed.
    func prepareBase() throws -> (key: String, root: String, hit: Bool, description: String) {
        let fm = FileManager.default
        switch recipe.base {
        case let .debian(suite, variant):
            let base = try DebianBase(suite: suite, variant: variant)
            let dir = "\(options.cache)/bases/\(base.key.prefix(32))"
            let root = "\(dir)/root"
            var hit = true
            if !fm.fileExists(atPath: root) {
                hit = false
                try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
                events.note("base: making debian:\(suite) (\(variant)) with mmdebstrap from the host's apt sources")
                do {
                    try base.make(at: root, onOutput: { [events] in events.output($0) })
                } catch let e as BuildError {
                    throw BuildError.invalid("\(recipe.baseLocation): the base debian:\(suite) cannot be made: \(e)")
                }
            }
            return (base.key, root, hit, "debian:\(suite) \(variant) (mmdebstrap)")
        case .scratch:
            let root = "\(options.cache)/bases/scratch/root"
            try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
            return ("scratch", root, true, "scratch")
        case let .ociLayout(path, _):
            throw BuildError.recipe(RecipeError(recipe.baseLocation, "FROM oci:\(path) needs the container layers module, which this build does not have yet"))
        }
    }

    /// Carries out a step that changes files, in `root`.
    func perform(_ s: Step, sources: [String], root: String, config: ConfigState, plan: BuildPlan,
                 onOutput: @escaping @Sendable (String) -> Void) throws {
        switch s.instruction {
        case let .run(cmd):
            let sb = Sandbox(root: root, environment: s.buildArgs + s.environment, workdir: config.workdir, user: config.user)
            let r = try sb.run(cmd.argv(shell: config.shell), onOutput: onOutput)
            guard r.status == 0 else {
                throw BuildError.stepFailed(step: s.text, location: s.location, status: r.status, outputTail: Command.tail(r.output, lines: 25))
            }
        case let .copy(srcs, dest, chown, chmod):
            try ContextCopy(context: recipe.context, ignore: plan.ignore, location: s.location)
                .apply(sources: srcs, destination: dest, chown: chown, chmod: chmod, add: false, root: root)
        case let .add(srcs, dest, chown, chmod):
            try ContextCopy(context: recipe.context, ignore: plan.ignore, location: s.location)
                .apply(sources: srcs, destination: dest, chown: chown, chmod: chmod, add: true, root: root)
        default:
            break
        }
    }
}
