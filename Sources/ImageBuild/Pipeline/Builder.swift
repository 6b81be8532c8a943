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
        let cache = try BuildCache(root: options.cache, recipe: recipe.name, events: events)
        defer { cache.close() }
        // The earlier stages count in the build's total time, not in the base phase's.
        let stages = try buildStages(in: cache)
        defer { for s in stages.values { s.pass.close() } }
        let baseStart = Date()
        let base = try BuildError.naming("\(recipe.baseLocation): making the base") { try prepareBase(in: cache) }
        let plan = try BuildPlan.make(recipe, baseKey: base.key + epochKey, stageKeys: stages.mapValues(\.key))
        let baseSeconds = Date().timeIntervalSince(baseStart)
        let vm = options.targets.contains(.vm)
            ? try VMPass(settings: recipe.vm, backend: options.vmBackend, cache: cache, noCache: options.noCache, events: events) : nil
        defer { vm?.cleanScratch() }
        let container = options.targets.contains(.container)
            ? try ContainerPass(driver: options.driver.rawValue, cache: cache, noCache: options.noCache,
                                sourceDateEpoch: sourceDateEpoch, events: events) : nil
        defer { container?.close() }
        container?.bundle = stager
        // --no-cache builds every step, as docker's does: nothing is taken from --cache-from either.
        var remoteSettings = options.remoteCache
        if options.noCache { remoteSettings.from = nil }
        let remote = remoteSettings.isEmpty ? nil : RemoteCache(settings: remoteSettings, events: events)
        container?.remote = remote
        vm?.remote = remote
        var state = State(plan: plan, container: container, vm: vm, stages: stages,
                          base: BuildReport.Phase(description: base.description, key: plan.rootKey, container: nil, vm: nil))
        try buildBase(base, seconds: baseSeconds, into: &state)
        try buildSteps(into: &state)
        try finalise(into: &state)
        return try BuildError.naming("writing the outputs into \(partial)") {
            try writeOutputs(of: state, into: partial, bundle: stager, started: started, restore: restore)
        }
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
    }

    /// Hands a running command's output to the events.
    var onOutput: @Sendable (String) -> Void {
        let sink = events
        return { sink.output($0) }
    }
}
