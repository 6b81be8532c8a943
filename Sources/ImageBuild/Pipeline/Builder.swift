import Foundation
import Layers
import QcowIO
import Host
import OCI
import RecipePlan

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
    public var targets: Set<StepTarget> = [.container, .vm]
    /// The storage driver of the container pass.
    public var driver = "overlay"
    /// How the VM pass reaches the disk: loop (root) or guestfs (libguestfs's appliance).
    public var vmBackend = VMPass.Backend.loop
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

    /// Builds into `OUTPUT.partial`, which replaces the output folder only when everything is
    /// written; on failure the partial folder is removed and the previous outputs stay as they were.
    public func run() throws -> BuildReport {
        let fm = FileManager.default
        try fm.createDirectory(atPath: options.cache, withIntermediateDirectories: true)
        let partial = options.output + ".partial"
        try? fm.removeItem(atPath: partial)
        try fm.createDirectory(atPath: partial, withIntermediateDirectories: true)
        let stager = options.targets.contains(.container) ? BundleStager(bundle: "\(partial)/bundle") : nil
        var restore: [(from: String, to: String)] = []
        do {
            return try run(into: partial, bundle: stager, restore: &restore)
        } catch {
            // The bundle's unpacking stops at the failed capture's end of stream.
            stager?.abandon()
            try? stager?.finish()
            for r in restore.reversed() { try? fm.moveItem(atPath: r.from, toPath: r.to) }
            try? fm.removeItem(atPath: partial)
            throw error
        }
    }

    func run(into partial: String, bundle stager: BundleStager?, restore: inout [(from: String, to: String)]) throws -> BuildReport {
        let started = Date()
        let fm = FileManager.default

        // Base.
        let baseStart = Date()
        let base = try prepareBase()
        let plan = try BuildPlan.make(recipe, baseKey: base.key)
        let baseSeconds = Date().timeIntervalSince(baseStart)
        let vm = options.targets.contains(.vm)
            ? try VMPass(settings: recipe.vm, backend: options.vmBackend, cache: options.cache, noCache: options.noCache, events: events) : nil
        defer { vm?.cleanScratch() }
        let container = options.targets.contains(.container)
            ? try ContainerPass(driver: options.driver, cache: options.cache, noCache: options.noCache,
                                sourceDateEpoch: options.sourceDateEpoch, events: events) : nil
        defer { container?.close() }
        container?.bundle = stager
        var config = StepConfig()
        var basePhase = BuildReport.Phase(description: base.description, key: plan.rootKey, container: nil, vm: nil)
        if let container {
            var m: BuildReport.Measure
            if let (layout, image) = base.image {
                m = try container.base(image: image, layout: layout)
                if let c = image.config.config { config.image = c }
            } else {
                m = try container.base(key: plan.rootKey, root: base.root, description: base.description)
            }
            m.seconds += baseSeconds
            basePhase.container = m
        }
        if let vm {
            var m = try vm.base(key: plan.rootKey, root: base.root, sourceDateEpoch: options.sourceDateEpoch)
            m.seconds += baseSeconds
            m.cacheHit = m.cacheHit && base.hit
            basePhase.vm = m
        }

        // Steps.
        var reports: [BuildReport.StepReport] = []
        let sink = events
        let onOutput: @Sendable (String) -> Void = { sink.output($0) }
        for p in plan.steps {
            let s = p.step
            var r = BuildReport.StepReport(index: p.index, instruction: s.text, location: s.location.description,
                                           target: s.target.rawValue, key: p.key, changesFiles: s.instruction.changesFiles)
            config.apply(s.instruction, environment: s.environment)
            if let container, s.target.includes(.container) {
                if s.instruction.changesFiles {
                    events.stepStarted(index: p.index, of: plan.steps.count, target: "container", text: s.text)
                    let cfg = config
                    let m = try container.step(key: p.key, text: s.text) { root in
                        try self.perform(s, in: LocalRoot(root: root), config: cfg, plan: plan, onOutput: onOutput)
                    }
                    events.stepFinished(index: p.index, target: "container", measure: m)
                    r.container = m
                } else {
                    container.metadata(s.text)
                }
            }
            if let vm, s.target.includes(.vm), s.instruction.changesFiles {
                events.stepStarted(index: p.index, of: plan.steps.count, target: "vm", text: s.text)
                let cfg = config
                let m = try vm.step(key: p.key, label: s.text) { disk in
                    try self.perform(s, in: disk, config: cfg, plan: plan, onOutput: onOutput)
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
            let m = try vm.finalise(key: plan.finalKey, environment: plan.steps.last?.step.environment ?? [], onOutput: onOutput)
            events.stepFinished(index: plan.steps.count + 1, target: "vm", measure: m)
            finalisation = BuildReport.Phase(description: "make the VM disk bootable", key: plan.finalKey, container: nil, vm: m)
        }

        // Outputs: written beside the old ones, swapped in when complete. What the previous
        // build in this folder wrote and would be written the same is moved over instead.
        let out = options.output
        let previous = OutputStamps.read(folder: out)
        var stamps = OutputStamps()
        var outputs = BuildReport.Outputs(folder: out)
        var totals = BuildReport.Totals(seconds: 0, cacheHits: 0, cacheMisses: 0)
        var bundleKey: String?
        do {
            if let vm {
                let reuse = previous?.reusableDisk(in: out, chainTip: vm.chainTip, clusterSize: vm.settings.clusterSize)
                events.note(reuse == nil ? "vm: writing the chain and the flattened disk"
                                         : "vm: writing the chain; the flattened disk of the previous build is the same and unchanged, kept")
                if let reuse { restore.append((from: "\(partial)/\(OutputStamps.disk)", to: reuse)) }
                let e = try vm.export(to: partial, reusing: reuse)
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
            if let container, let stager {
                events.note("container: writing the OCI layout and the runtime bundle")
                outputs.ociLayout = "oci"
                let digest = try container.export(layout: "\(partial)/oci", tag: recipe.name, config: config.image)
                outputs.imageDigest = digest
                bundleKey = try OutputStamps.bundleKey(layers: container.layers.map(\.descriptor.digest), config: config.image, hostname: recipe.name)
                if !stager.isStarted, let reuse = previous?.reusableBundle(in: out, key: bundleKey!) {
                    events.note("container: the runtime bundle of the previous build is the same and unchanged, kept")
                    stager.abandon()
                    try fm.moveItem(atPath: reuse, toPath: stager.bundle)
                    restore.append((from: stager.bundle, to: reuse))
                } else {
                    try stager.finish()
                    try RuntimeBundle.writeConfig(at: stager.bundle, config: config.image, hostname: recipe.name)
                }
                outputs.bundle = "bundle"
                let cm = [basePhase.container].compactMap { $0 } + reports.compactMap(\.container)
                totals.containerSeconds = cm.map(\.seconds).reduce(0, +)
                totals.imageCompressedBytes = container.layers.map { UInt64($0.descriptor.size) }.reduce(0, +)
                totals.imageUncompressedBytes = cm.compactMap(\.layerUncompressedBytes).reduce(0, +)
            }
            let measures = [basePhase.container, basePhase.vm, finalisation?.vm].compactMap { $0 } + reports.flatMap { [$0.container, $0.vm].compactMap { $0 } }
            totals.cacheHits = measures.filter(\.cacheHit).count
            totals.cacheMisses = measures.count - totals.cacheHits
            if vm != nil {
                // The VM side's own measures only (the container side's are in containerSeconds).
                let vmm = [basePhase.vm, finalisation?.vm].compactMap { $0 } + reports.compactMap(\.vm)
                totals.vmSeconds = vmm.map(\.seconds).reduce(0, +)
                totals.vmChainAllocatedBytes = vmm.compactMap(\.qcow2AllocatedBytes).reduce(0, +)
            }
            totals.seconds = Date().timeIntervalSince(started)
            var report = BuildReport(recipe: recipe.name, recipeFile: recipe.file,
                                     targets: StepTarget.allCases.filter { $0 != .both && options.targets.contains($0) }.map(\.rawValue),
                                     startedAt: ISO8601DateFormatter().string(from: started), base: basePhase, steps: reports,
                                     finalisation: finalisation, totals: totals, outputs: outputs)
            if container != nil {
                try report.addLayerWaste(layout: "\(partial)/oci", tag: recipe.name, listings: "\(options.cache)/containers/listings")
            }
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try enc.encode(report).write(to: URL(fileURLWithPath: "\(partial)/report.json"))
            try Handoff(report: report, workloads: recipe.workloads).write(into: partial)
            let old = out + ".old"
            try? fm.removeItem(atPath: old)
            if fm.fileExists(atPath: out) { try fm.moveItem(atPath: out, toPath: old) }
            try fm.moveItem(atPath: partial, toPath: out)
            restore = []
            try? fm.removeItem(atPath: old)
            // Stamped in place: what a later build may keep if it is still untouched then.
            if let bundleKey {
                stamps.bundle = try? OutputStamps.Bundle(key: bundleKey, stamp: TreeStamp.take(OutputStamps.bundleEntries.map { "\(out)/\($0)" }))
            }
            if let vm, let tip = FileIdentity(path: vm.chainTip) {
                stamps.disk = try? OutputStamps.Disk(chainTip: tip, clusterSize: vm.settings.clusterSize,
                                                     stamp: TreeStamp.take(["\(out)/\(OutputStamps.disk)"]))
            }
            try? stamps.write(folder: out)
            return report
        }
    }

    struct Base {
        var key: String
        /// The base as a folder (what the VM's base disk is made from).
        var root: String
        var hit: Bool
        var description: String
        /// For FROM oci:: the layout and image, whose layers the container side keeps.
        var image: (ImageLayout, ImageLayout.Image)?
    }

    /// The base root folder, made (and cached) when needed.
    func prepareBase() throws -> Base {
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
            return Base(key: base.key, root: root, hit: hit, description: "debian:\(suite) \(variant) (mmdebstrap)")
        case .scratch:
            let root = "\(options.cache)/bases/scratch/root"
            try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
            return Base(key: "scratch", root: root, hit: true, description: "scratch")
        case let .ociLayout(path, tag):
            let full = path.hasPrefix("/") ? path : "\(recipe.context)/\(path)"
            let layout: ImageLayout
            let image: ImageLayout.Image
            do {
                layout = try ImageLayout(opening: full)
                image = try layout.image(tag: tag)
            } catch {
                throw BuildError.recipe(RecipeError(recipe.baseLocation, "FROM oci:\(path)\(tag.map { ":" + $0 } ?? ""): \(error)"))
            }
            let digest = image.manifestDescriptor.digest
            let root = "\(options.cache)/bases/oci-\(digest.hex.prefix(32))/root"
            var hit = true
            if !fm.fileExists(atPath: root) {
                hit = false
                events.note("base: unpacking \(path) (\(digest)) into a folder for the VM disk")
                try? fm.removeItem(atPath: root + ".partial")
                try fm.createDirectory(atPath: root + ".partial", withIntermediateDirectories: true)
                for d in image.manifest.layers {
                    _ = try LayerApply.apply(layer: layout.blobs.path(of: d.digest), to: root + ".partial", expecting: d.digest)
                }
                try fm.moveItem(atPath: root + ".partial", toPath: root)
            }
            return Base(key: digest.description, root: root, hit: hit, description: "oci:\(path) \(digest)", image: (layout, image))
        }
    }

    /// Carries out a step that changes files, in a workspace.
    func perform(_ s: Step, in disk: Workspace, config: StepConfig, plan: BuildPlan,
                 onOutput: @escaping @Sendable (String) -> Void) throws {
        let copy = ContextCopy(context: recipe.context, ignore: plan.ignore, location: s.location)
        switch s.instruction {
        case let .run(cmd):
            let r = try disk.run(cmd.argv(shell: config.shell), environment: s.buildArgs + s.environment,
                                 workdir: config.workdir, user: config.user, onOutput: onOutput)
            guard r.status == 0 else {
                throw BuildError.stepFailed(step: s.text, location: s.location, status: r.status, outputTail: Command.tail(r.output, lines: 25))
            }
        case let .copy(srcs, dest, chown, chmod):
            try disk.copy(copy, sources: srcs, destination: dest, chown: chown, chmod: chmod, add: false)
        case let .add(srcs, dest, chown, chmod):
            try disk.copy(copy, sources: srcs, destination: dest, chown: chown, chmod: chmod, add: true)
        default:
            break
        }
    }
}
