import ArgumentParser
import Foundation
import ImageBuild
import Layers
import QcowIO

struct BuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Build a recipe into a layered OCI image and a qcow2 VM disk, step by step, and measure each step.",
        discussion: """
            Outputs go to out/NAME/ (--output): oci/ (OCI layout, tagged NAME), bundle/ (runtime \
            bundle for runc), vm/chain/*.qcow2 (base first, each backed by the one before), \
            vm/disk.qcow2 (flattened), vm/boot/{vmlinuz,initrd.img}, and report.json. \
            Exit status: 0 built, 1 a step or the base failed, 2 the recipe is not accepted.
            """)

    @Argument(help: "A recipe folder holding a Containerfile (e.g. recipes/tiny), or a recipe file; with -f, the build context folder.", transform: absolutePath)
    var recipe: String
    @Option(name: .shortAndLong, help: "The recipe file, when it is not the context folder's Containerfile or Dockerfile.", transform: absolutePath)
    var file: String?
    @Option(name: .shortAndLong, help: "The image's name, NAME[:TAG]: the OCI layout's ref name and the report's image (default: the recipe folder's name); the default output folder is out/ and NAME's last part.")
    var tag: String?
    @Option(help: "The images to build: container, vm or both.") var images: BuildTarget?
    @Option(help: "The stage to build, as docker reads --target. (--target container|vm|both, for a recipe without a stage of that name, is the older spelling of --images.)")
    var target: String?
    @Option(help: "Storage driver of the container build (see imgbench drivers; default overlay, vfs when rootless).") var driver: StorageDriverKind?
    @Option(help: "How VM steps reach the disk: loop (qemu-storage-daemon FUSE export and a loop mount; root) or guestfs (libguestfs's appliance; no root, slower; the default when rootless).")
    var vmBackend: VMPass.Backend?
    @Option(help: "Formats of the flattened VM disk, comma-separated: qcow2 (always written), raw, vmdk, vhdx, containerdisk (KubeVirt); converted at the end and checked with qemu-img.")
    var vmFormat: String?
    @Flag(help: "Build in a user namespace over your subordinate ids (/etc/subuid), without root; the default when not run as root. See README, Security.")
    var rootless = false
    @Option(help: "Output folder (default out/NAME).", transform: absolutePath) var output: String?
    @Option(help: "Cache folder (default $XDG_CACHE_HOME/imgbench or ~/.cache/imgbench).", transform: absolutePath) var cache: String?
    @Flag(help: "Ignore the cache (and replace what it holds for these steps).") var noCache = false
    @Flag(help: "Do not send apt's downloads through the package cache (CACHE/packages): every step downloads what it installs, as a build alone would.")
    var noPackageCache = false
    @Flag(help: "Build the container side, then the VM side, one after the other: each side's timings are then taken alone on the machine (by default the two sides run at the same time).")
    var serial = false
    @Option(name: .customLong("build-arg"), help: "KEY=VALUE for an ARG, or KEY to take its value from the environment; may repeat.")
    var buildArgs: [String] = []
    @Option(help: "id=ID,src=FILE: a file RUN --mount=type=secret,id=ID mounts while a step runs (never in a layer, a disk or the report); may repeat.")
    var secret: [String] = []
    @Option(help: "The network of RUN steps: host (the default, so that apt works) or none (a loopback only); RUN --network= overrides it per step.")
    var network: Sandbox.Network = .host
    @Option(help: "A previous build's output folder (not --output): report.json then carries the update delta from it.", transform: absolutePath)
    var baseline: String?
    @Option(help: "auto (plain lines when stderr is not a terminal), plain, tty or quiet.") var progress: ProgressMode = .auto
    @Option(help: "table or json (the report on stdout).") var format: OutputFormat = .table
    @Option(help: "Take cache entries that this build lacks from a registry repository (REGISTRY/REPO), where --cache-to put them.")
    var cacheFrom: String?
    @Option(help: "Store every step's cache entries (container layer, VM link, boot files) in a registry repository (REGISTRY/REPO), tagged by step key.")
    var cacheTo: String?
    @OptionGroup(title: "Registry (FROM REGISTRY/REPO:TAG, --cache-from, --cache-to)") var registry: RegistryAccessFlags

    enum BuildTarget: String, ExpressibleByArgument, CaseIterable { case container, vm, both }

    func validate() throws {
        try BuildRunning.validate(buildArgs: buildArgs)
        _ = try BuildRunning.secrets(secret)
        if let tag, try parseReference(tag).digest != nil { throw ValidationError("-t \(tag): a name and tag, without a digest") }
        if let vmFormat {
            do { _ = try VMFormats.parse(vmFormat) } catch { throw ValidationError("\(error)") }
        }
    }

    /// The repositories of --cache-from and --cache-to (a tag or digest is refused: entries are tagged by key).
    func remoteCache() throws -> RemoteCacheSettings {
        var r = RemoteCacheSettings()
        r.options = registry.clientOptions
        for (flag, text) in [("--cache-from", cacheFrom), ("--cache-to", cacheTo)] {
            guard let text else { continue }
            let ref = try parseReference(text)
            guard ref.tag == nil && ref.digest == nil else { throw ValidationError("\(flag) \(text): give a repository (REGISTRY/REPO), without a tag or digest") }
            if flag == "--cache-from" { r.from = ref } else { r.to = ref }
        }
        return r
    }

    func run() throws {
        let guessed = images ?? target.flatMap(BuildTarget.init(rawValue:)) ?? .both
        let rootless = try BuildRunning.enterRootlessIfAsked(rootless, vmBackend: vmBackend, vm: guessed != .container)
        let args = BuildRunning.buildArgs(buildArgs)
        let (chosen, parsed) = try BuildRunning.select(images, target: target, recipe: try BuildRunning.load(recipe, file: file, buildArgs: args))
        let name = try tag.map { String(try parseReference($0).repository.split(separator: "/").last!) } ?? parsed.name
        var options = BuildOptions(output: output ?? absolutePath("out/\(name)"), cache: cache ?? absolutePath(BuildOptions.defaultCache))
        options.tag = tag
        options.secrets = try BuildRunning.secrets(secret)
        options.noCache = noCache
        options.packageCache = !noPackageCache
        options.serial = serial
        options.buildArgs = args
        options.targets = chosen.targets
        options.driver = driver ?? (rootless ? .vfs : .overlay)
        options.vmBackend = vmBackend ?? (rootless ? .guestfs : .loop)
        if let vmFormat { options.vmFormats = try VMFormats.parse(vmFormat) }
        options.network = network
        options.registry = registry.clientOptions
        options.remoteCache = try remoteCache()
        if let epoch = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"].flatMap(Int.init) { options.sourceDateEpoch = epoch }
        options.baseline = try baseline.map { try BuildRunning.checkBaseline($0, recipe: parsed.name, output: options.output) }
        let events = TerminalBuildEvents(mode: progress)
        let report = try BuildRunning.run(removing: [options.output + ".partial"]) {
            try Builder(recipe: parsed, options: options, events: events).run()
        }
        switch format {
        case .json: printOut(try JSONOutput.string(report))
        case .table: printOut(BuildReportTable.render(report))
        }
    }
}

/// Build progress on stderr: a line per step, and the output of running commands in plain mode.
final class TerminalBuildEvents: BuildEvents, @unchecked Sendable {
    let mode: ProgressMode
    let enabled: Bool

    /// Every mode but quiet shows the steps and their commands' output: a CI log (stderr not a
    /// terminal) is never silent by default.
    init(mode: ProgressMode) {
        self.mode = mode
        enabled = !mode.isQuiet
    }

    func note(_ message: String) {
        if enabled { printErr("==> \(message)") }
    }

    func stepStarted(index: Int, of total: Int, target: String, text: String) {
        if enabled { printErr("==> [\(target) \(index > total ? "final" : "\(index)/\(total)")] \(text)") }
    }

    func stepFinished(index: Int, target: String, measure: BuildReport.Measure) {
        guard enabled else { return }
        let size = measure.qcow2AllocatedBytes.map { ", \(ByteSize.format($0)) allocated" }
            ?? measure.layerCompressedBytes.map { ", layer \(ByteSize.format($0))" } ?? ""
        printErr("    \(measure.cacheHit ? "cached" : "done") in " + String(format: "%.1f s", measure.seconds) + size)
    }

    func output(_ text: String) {
        if enabled { FileHandle.standardError.write(Data(text.utf8)) }
    }
}

enum BuildReportTable {
    static func render(_ r: BuildReport) -> String {
        var t = TextTable(header: ["step", "instruction", "target", "ctr s", "layer gz", "layer tar", "vm s", "vm allocated", "cached"])
        // A cached step's time beside what it cost when it was built.
        func secs(_ m: BuildReport.Measure?) -> String {
            guard let m else { return "-" }
            guard m.cacheHit, let built = m.builtSeconds else { return String(format: "%.1f", m.seconds) }
            return String(format: "%.1f (built %.1f)", m.seconds, built)
        }
        func row(_ name: String, _ text: String, _ target: String, _ c: BuildReport.Measure?, _ v: BuildReport.Measure?) {
            let cached = [c.map { "ctr:" + ($0.cacheHit ? "yes" : "no") }, v.map { "vm:" + ($0.cacheHit ? "yes" : "no") }].compactMap { $0 }
            t.rows.append([name, String(text.prefix(44)), target, secs(c),
                           c?.layerCompressedBytes.map(ByteSize.format) ?? "-", c?.layerUncompressedBytes.map(ByteSize.format) ?? "-",
                           secs(v), v?.qcow2AllocatedBytes.map(ByteSize.format) ?? "-", cached.isEmpty ? "-" : cached.joined(separator: " ")])
        }
        row("base", r.base.description, "both", r.base.container, r.base.vm)
        for s in r.steps { row("\(s.index)", s.instruction, s.target, s.container, s.vm) }
        if let f = r.finalisation { row("final", f.description, "vm", nil, f.vm) }
        var lines = [t.render(), ""]
        lines.append(String(format: "total %.1f s, %d cached, %d built", r.totals.seconds, r.totals.cacheHits, r.totals.cacheMisses)
                     + (r.totals.sides == "concurrent" ? " (the two sides at the same time)" : "")
                     + (r.totals.cacheHits == 0 ? "" : builtCost(r.totals)))
        if let c = r.totals.imageCompressedBytes, let u = r.totals.imageUncompressedBytes {
            lines.append("container: image \(ByteSize.format(c)) compressed, \(ByteSize.format(u)) uncompressed" + (r.outputs.imageDigest.map { ", \($0)" } ?? ""))
        }
        if let a = r.totals.vmChainAllocatedBytes, let f = r.totals.vmFlattenedAllocatedBytes, let v = r.totals.vmVirtualSize {
            lines.append("vm: chain allocates \(ByteSize.format(a)); flattened disk \(ByteSize.format(f)) allocated of \(ByteSize.format(v)) virtual")
        }
        if let p = r.totals.packages {
            lines.append("packages: \(ByteSize.format(p.downloadedBytes)) downloaded (\(p.downloadedFiles) files kept), \(ByteSize.format(p.fromCacheBytes)) from the package cache (\(p.fromCacheFiles) files)"
                + (r.totals.packagesThrough.map { "; the archive reached through \($0)" } ?? ""))
        }
        if let u = r.update { lines.append("update from \(u.baseline): \(u.summary)") }
        lines.append("outputs in \(r.outputs.folder)/")
        return lines.joined(separator: "\n")
    }

    /// What each side's steps cost when they were built, when every one of them says.
    static func builtCost(_ t: BuildReport.Totals) -> String {
        let sides = [("container", t.containerBuiltSeconds), ("vm", t.vmBuiltSeconds)].compactMap { name, s in
            s.map { "\(name) " + String(format: "%.1f s", $0) }
        }
        return sides.isEmpty ? "" : "; when built: " + sides.joined(separator: ", ")
    }
}

/// `--vm-backend loop|guestfs`: the option is the enum, so `--help` lists its values.
