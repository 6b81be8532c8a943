import Foundation
import Host
import Layers
import RecipePlan
import Registry

/// What a build tells whoever draws its progress.
public protocol BuildEvents: Sendable {
    func note(_ message: String)
    func stepStarted(index: Int, of total: Int, target: String, text: String)
    func stepFinished(index: Int, target: String, measure: BuildReport.Measure)
    /// Output of a running command.
    func output(_ text: String)
    /// Something the user must see whatever the progress display: the build goes on without it.
    func warning(_ message: String)
}

extension BuildEvents {
    /// On standard error, as one line, also with `--progress none`.
    public func warning(_ message: String) {
        FileHandle.standardError.write(Data("imgbench: warning: \(message)\n".utf8))
    }
}

public struct BuildOptions: Sendable {
    public var output: String
    public var cache: String
    public var noCache = false
    public var targets: Set<StepTarget> = [.container, .vm]
    /// The storage driver of the container pass.
    public var driver = StorageDriverKind.overlay
    /// How the VM pass reaches the disk: loop (root) or guestfs (libguestfs's appliance).
    public var vmBackend = VMPass.Backend.loop
    /// The formats of the flattened disk besides qcow2 (`--vm-format`).
    public var vmFormats: [VMFormats.Format] = []
    public var buildArgs: [String: String] = [:]
    /// The network of RUN steps that do not say (`RUN --network=`): the host's, or none.
    public var network = Sandbox.Network.host
    public var sourceDateEpoch: Int?
    /// How a registry is reached (TLS, certificates): for `FROM REGISTRY/REPO:TAG`.
    public var registry = RegistryClient.Options()
    /// The registry repositories of `--cache-from` and `--cache-to`.
    public var remoteCache = RemoteCacheSettings()
    /// The image's name and tag (`-t NAME[:TAG]`): the layout's ref name, the report's and the
    /// hand-off's image reference. nil: the recipe's name.
    public var tag: String?
    /// `--secret id=ID,src=FILE`: the files `RUN --mount=type=secret` mounts, by id.
    public var secrets: [String: String] = [:]
    /// A previous build's output folder: the report then carries the update delta from it.
    public var baseline: String?
    /// Whether apt's downloads go through the package cache (`PackageCache`); `--no-package-cache`
    /// makes every step download as it would alone.
    public var packageCache = true
    /// The container side, then the VM side, one after the other (`--serial`), for measurements
    /// that need one side alone on the machine; by default they run at the same time.
    public var serial = false

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
    /// The images `COPY --from=IMAGE` reads, by reference (`copyImages`).
    var images: [String: Base] = [:]
    /// Whether the recipe holds its base images' ONBUILD triggers already (`withTriggers`).
    var triggersRead = false
    /// The package cache apt's downloads go through while the build runs (nil: none).
    var packages: PackageCache?

    public init(recipe: Recipe, options: BuildOptions, events: BuildEvents) {
        self.recipe = recipe
        self.options = options
        self.events = events
    }

    /// Builds into `OUTPUT.partial`, which replaces the output folder only when everything is
    /// written; on failure the partial folder is removed and the previous outputs stay as they were.
    public func run() throws -> BuildReport {
        if !triggersRead, let recipe = try withTriggers() {
            let b = Builder(recipe: recipe, options: options, events: events)
            b.triggersRead = true
            return try b.run()
        }
        let fm = FileManager.default
        try OutputFolder.check(options.output, cache: options.cache)
        try BuildCache.prepare(options.cache)
        let partial = options.output + ".partial"
        try? fm.removeItem(atPath: partial)
        try fm.createDirectory(atPath: partial, withIntermediateDirectories: true)
        try OutputFolder.mark(partial)
        let stager = options.targets.contains(.container) ? BundleStager(bundle: "\(partial)/bundle") : nil
        // With no previous bundle to keep, the bundle is made whatever hits: from the first layer
        // on, beside the build, rather than after the last step.
        if OutputStamps.read(folder: options.output)?.bundle == nil { stager?.start() }
        let restore = OutputRestore()
        do {
            return try run(into: partial, bundle: stager, restore: restore)
        } catch {
            // The bundle's unpacking stops at the failed capture's end of stream.
            stager?.abandon()
            try? stager?.finish()
            restore.undo()
            // Also removed by the Ctrl-C handler, maybe at the same time: removeTree allows that.
            try? FileSystem.removeTree(partial)
            throw error
        }
    }

    /// The phases in order: base, steps, finalisation, outputs (each in its `Builder+` file).
    func run(into partial: String, bundle stager: BundleStager?, restore: OutputRestore) throws -> BuildReport {
        let started = Date()
        try refuseUnsupported()
        let cache = try BuildCache(root: options.cache, recipe: recipe.name, events: events)
        defer { cache.close() }
        if options.packageCache {
            packages = try PackageCache(cache: options.cache)
        }
        defer { packages?.close() }
        images = try copyImages(in: cache)
        // The earlier stages count in the build's total time, not in the base phase's.
        // --no-cache builds every step, as docker's does: nothing is taken from --cache-from either.
        var remoteSettings = options.remoteCache
        if options.noCache { remoteSettings.from = nil }
        let remote = remoteSettings.isEmpty ? nil : RemoteCache(settings: remoteSettings, events: events)
        let stages = try buildStages(in: cache, remote: remote)
        defer { for s in stages.values { s.pass.close() } }
        let baseStart = Date()
        let base = try BuildError.naming("\(recipe.baseLocation): making the base") { try prepareBase(in: cache) }
        let plan = try BuildPlan.make(recipe, baseKey: base.key + epochKey, stageKeys: stages.mapValues(\.key), imageKeys: imageKeys)
        let baseSeconds = Date().timeIntervalSince(baseStart)
        let vm = options.targets.contains(.vm)
            ? try VMPass(settings: recipe.vm, backend: options.vmBackend, cache: cache, noCache: options.noCache, events: events) : nil
        defer { vm?.cleanScratch() }
        let container = options.targets.contains(.container)
            ? try ContainerPass(driver: options.driver.rawValue, cache: cache, noCache: options.noCache,
                                sourceDateEpoch: sourceDateEpoch, events: events) : nil
        defer { container?.close() }
        container?.bundle = stager
        stager?.listings = LayerListingCache.folder(cache: options.cache)
        container?.remote = remote
        // Each side stores with a remote cache of its own: a step that mounts a secret turns
        // storing off for its side only while it runs.
        vm?.remote = remote?.forOtherSide()
        vm?.packages = packages
        var state = State(plan: plan, container: container, vm: vm, stages: stages,
                          base: BuildReport.Phase(description: base.description, key: plan.rootKey, container: nil, vm: nil))
        try buildSides(base, seconds: baseSeconds, into: &state)
        let report = try BuildError.naming("writing the outputs into \(partial)") {
            try writeOutputs(of: state, into: partial, bundle: stager, started: started, restore: restore)
        }
        register(state)
        return report
    }

    /// The recipe read again with the ONBUILD triggers of its stages' base images after their
    /// FROM (docker runs them in the build FROM the image, right after the FROM); nil when no
    /// base image the build uses has any. The bases are found as the build finds them, which
    /// makes no root (a registry's image is pulled into the cache, as the build would).
    func withTriggers() throws -> Recipe? {
        let all = recipe.stages.isEmpty ? [recipe] : recipe.stages
        var used = Set(recipe.neededStages + [recipe.stageIndex]), parent = recipe.parentStage
        while let p = parent, used.insert(p).inserted { parent = all[p].parentStage }
        // Only an image can have triggers: not scratch, nor a Debian root the store does not shadow.
        let images = used.sorted().filter { i in
            guard all[i].parentStage == nil else { return false }
            switch all[i].base {
            case .scratch: return false
            case .debian: return LocalImages.find(RecipeParser.storeName(all[i].baseReference), cache: options.cache) != nil
            default: return true
            }
        }
        guard !images.isEmpty else { return nil }
        var triggers: [Int: [String]] = [:]
        let cache = try BuildCache(root: options.cache, recipe: recipe.name, events: events)
        defer { cache.close() }
        for i in images {
            let base = try BuildError.naming("\(all[i].baseLocation): finding the base") {
                try Builder(recipe: all[i], options: options, events: events).prepareBase(in: cache)
            }
            if let t = base.image?.1.config.config?.onBuild, !t.isEmpty { triggers[i] = t }
        }
        guard !triggers.isEmpty else { return nil }
        events.note("running the ONBUILD triggers of " + triggers.keys.sorted().map { all[$0].baseReference }.joined(separator: ", "))
        guard let data = FileManager.default.contents(atPath: recipe.file), let text = String(data: data, encoding: .utf8) else {
            throw BuildError.invalid("\(recipe.file): cannot read the recipe again to add its base's ONBUILD triggers")
        }
        var parser = RecipeParser(file: recipe.file, buildArgs: options.buildArgs)
        parser.triggers = triggers
        let parsed = try parser.parse(text)
        guard var r = parsed.stage(named: String(recipe.stageIndex)) else { throw BuildError.invalid("\(recipe.file): the stage to build is gone") }
        (r.context, r.name) = (recipe.context, recipe.name)
        r.stages = r.stages.map { var s = $0; (s.context, s.name) = (recipe.context, recipe.name); return s }
        return r
    }

    /// Registers the image in the local image store under its name (`LocalImages`), so that a
    /// later recipe's `FROM NAME:TAG` finds it; a build that made no container image registers
    /// nothing. The outputs are written already: a failure here is a warning.
    func register(_ state: State) {
        guard let container = state.container else { return }
        let name = RecipeParser.storeName(imageName)
        do {
            let image = try LocalImages.register(name: name, cache: options.cache, container: container, config: state.config.image,
                                                 vm: state.vm, recipe: recipe.file)
            events.note("local image store: \(name) is \(image.manifest)" + (image.vm == nil ? " (no VM chain: the VM disk was not built)" : " with its VM chain"))
        } catch {
            events.warning("the local image store could not register \(name): \(error)")
        }
    }

    /// What the build cannot do, refused before anything is made, at the step's or directive's
    /// place: `--vm-backend guestfs` mounts nothing, so a VM step with `RUN --mount` cannot run
    /// there, and a `vm-boot=firmware` finalisation installs GRUB through a loop device.
    func refuseUnsupported() throws {
        guard options.vmBackend == .guestfs, options.targets.contains(.vm) else { return }
        if recipe.vm.boot == .firmware {
            throw BuildError.recipe(RecipeError(directiveLocation("vm-boot"), "vm-boot=firmware needs --vm-backend loop: its finalisation installs GRUB through a loop device (grub-install writes the disk's MBR and BIOS boot partition), which the guestfs backend (and so a rootless build) does not have (build as root with --vm-backend loop, or use # vm-boot=kernel)"))
        }
        if let s = recipe.steps.first(where: { !$0.mounts.isEmpty && $0.target.includes(.vm) }) {
            throw BuildError.recipe(RecipeError(s.location, "RUN --mount needs --vm-backend loop: the guestfs backend runs VM steps in libguestfs's appliance, where imgbench mounts nothing (build with --vm-backend loop, or --images container)"))
        }
    }

    /// Where the parser directive `key` (`# KEY=VALUE`, at the top) is in the recipe file.
    func directiveLocation(_ key: String) -> SourceLocation {
        let lines = (try? String(contentsOfFile: recipe.file, encoding: .utf8))?.split(separator: "\n", omittingEmptySubsequences: false) ?? []
        for (i, line) in lines.enumerated() {
            let text = line.drop { $0 == " " || $0 == "\t" }
            guard text.hasPrefix("#") else { break }
            if let r = text.range(of: key), text[text.index(after: text.startIndex)..<r.lowerBound].allSatisfy({ $0 == " " || $0 == "\t" }) {
                return SourceLocation(file: recipe.file, line: i + 1, column: line.distance(from: line.startIndex, to: r.lowerBound) + 1)
            }
        }
        return SourceLocation(file: recipe.file, line: 1, column: 1)
    }

    /// The key of each image `COPY --from=IMAGE` reads, by reference.
    var imageKeys: [String: String] { images.mapValues(\.key) }

    /// The images the target's steps and the stages it needs copy from (`COPY --from=IMAGE`),
    /// found as FROM finds a base (the local store first), by reference; their roots are made
    /// only when a step copies from them.
    func copyImages(in cache: BuildCache) throws -> [String: Base] {
        var out: [String: Base] = [:]
        for s in recipe.steps + recipe.neededStages.flatMap({ recipe.stages[$0].steps }) {
            guard let source = s.copyFromImage, out[source.reference] == nil else { continue }
            var r = recipe
            (r.base, r.baseReference, r.baseLocation) = (source.base, source.reference, s.location)
            out[source.reference] = try BuildError.naming("\(s.location): COPY --from=\(source.reference)") {
                try Builder(recipe: r, options: options, events: events).prepareBase(in: cache)
            }
        }
        return out
    }

    /// The SOURCE_DATE_EPOCH of this build (the option, else the environment's): it changes what
    /// every capture and the base disk hold.
    var sourceDateEpoch: Int? {
        options.sourceDateEpoch ?? CaptureOptions.environmentEpoch.map { Int($0) }
    }

    /// What the epoch adds to the base's key, so that every entry of the cache made under one
    /// epoch (or none) is apart from those of another, on both targets: a warm cache gives the
    /// digest an empty one gives.
    var epochKey: String { Builder.epochKey(sourceDateEpoch) }

    /// What the image is called: `BuildOptions.tag`, else the recipe's name.
    var imageName: String { options.tag ?? recipe.name }

    static func epochKey(_ epoch: Int?) -> String { epoch.map { "\nSOURCE_DATE_EPOCH=\($0)" } ?? "" }

    /// What the phases of one build hand on: the plan, the passes, the image config so far and
    /// the measures of what is done.
    struct State {
        let plan: BuildPlan
        let container: ContainerPass?
        let vm: VMPass?
        /// The earlier stages the target copies from, built.
        let stages: [Int: StageBuild]
        var config = StepConfig()
        var base: BuildReport.Phase
        var steps: [BuildReport.StepReport] = []
        var finalisation: BuildReport.Phase?

        /// The earlier stages' steps, in stage order.
        var stageSteps: [BuildReport.StepReport]? {
            stages.isEmpty ? nil : stages.keys.sorted().flatMap { stages[$0]!.steps }
        }
    }

    /// Hands a running command's output to the events.
    var onOutput: @Sendable (String) -> Void {
        let sink = events
        return { sink.output($0) }
    }
}
