import Foundation
import Host
import ImageBuild
import Layers
import OCI
import QcowIO
import RecipePlan

/// The write overhead of copy-on-write storage: one write-heavy workload (a RUN step of a recipe)
/// run on the same base root on a plain folder (no copy-on-write: the baseline), on each storage
/// driver, on a qcow2 overlay reached the way the build reaches it (qemu-storage-daemon's FUSE
/// export and a loop mount), and on a raw disk image; wall time of the workload alone, its ratio
/// to the baseline of the same round, the bytes the copy-on-write layer took, and how many of the
/// base's files were copied up.
///
/// The base is the recipe built up to the step before the workload (with `imgbench build`, so the
/// cache serves it; `vm-kernel=host`, so that the base disk holds no kernel of its own). Package
/// downloads are not timed: every run sees the same host folder as /var/cache/apt/archives, which
/// the first run fills, so the figure is the writes of dpkg (or of the workload) on the storage,
/// not the network's speed. Rounds are interleaved: with `repeats` > 1 each round runs every
/// environment once, in the same order, and ratios are taken within a round.
public struct CowMeasurement {
    /// A named workload: `dist-upgrade`, `kernel-install` and `fio-randrw` are recipes of that
    /// name in the recipes folder; otherwise RECIPE or RECIPE:STEP (the step's index as the build
    /// report numbers it; the last step by default).
    public struct Workload: Sendable {
        public var name: String
        public var recipe: Recipe
        /// Index into `recipe.steps` of the workload's RUN step.
        public var stepIndex: Int

        public static let builtIn = ["dist-upgrade", "kernel-install", "fio-randrw"]

        public static func resolve(_ spec: String, recipes: String) throws -> Workload {
            var path = spec, step: Int?
            if Workload.builtIn.contains(spec) {
                path = "\(recipes)/\(spec)"
            } else if let colon = spec.lastIndex(of: ":"), let n = Int(spec[spec.index(after: colon)...]) {
                path = String(spec[..<colon])
                step = n
            }
            path = LexicalPath.absolute(path)
            guard FileManager.default.fileExists(atPath: path) else {
                throw BuildError.invalid("--workload \(spec): no recipe at \(path) (built-in workloads: \(builtIn.joined(separator: ", ")), or RECIPE[:STEP])")
            }
            let recipe = try RecipeParser.load(path)
            let index: Int
            if let step {
                // Steps are numbered from 1 in recipe order, as the plan and the report number them.
                guard step >= 1, step <= recipe.steps.count else {
                    throw BuildError.invalid("--workload \(spec): \(recipe.file) has no step \(step) (steps 1 to \(recipe.steps.count))")
                }
                index = step - 1
            } else {
                guard let i = recipe.steps.lastIndex(where: { if case .run = $0.instruction { return true }; return false }) else {
                    throw BuildError.invalid("--workload \(spec): \(recipe.file) has no RUN step to measure")
                }
                index = i
            }
            guard case .run = recipe.steps[index].instruction else {
                throw BuildError.invalid("\(recipe.steps[index].location): --workload \(spec): step \(index + 1) is not a RUN step: \(recipe.steps[index].text)")
            }
            return Workload(name: Workload.builtIn.contains(spec) ? spec : "\(recipe.name):\(index + 1)", recipe: recipe, stepIndex: index)
        }
    }

    public var workload: Workload
    public var drivers: [String]
    public var repeats: Int
    public var cache: String
    public var workdir: String
    public var events: BuildEvents
    /// Also run the workload in a booted VM (see `BootedWorkload`), stopped after `vmTimeout`.
    public var bootedVM = false
    public var vmTimeout: Double = 3600

    public init(workload: Workload, drivers: [String], repeats: Int, cache: String, workdir: String, events: BuildEvents) {
        self.workload = workload
        self.drivers = drivers
        self.repeats = repeats
        self.cache = cache
        self.workdir = workdir
        self.events = events
    }

    public struct Row: Codable, Equatable, Sendable {
        /// "baseline", "container" or "vm".
        public var kind: String
        public var storage: String
        public var available: Bool
        public var reason: String?
        public var seconds: Summary?
        /// The environment's time over the baseline's, per round.
        public var ratio: Summary?
        /// Bytes the workload left in the copy-on-write layer (the writable layer, the qcow2
        /// overlay's allocated clusters, the raw image's or the folder's growth).
        public var bytesWritten: Summary?
        /// Files of the base that the workload changed and the driver copied up whole.
        public var filesCopiedUp: Summary?
        public var note: String?
    }

    public struct Result: Codable, Equatable, Sendable {
        public var schemaVersion = 1
        public var kind = ResultKind.cow
        public var workload: String
        public var recipe: String
        public var step: String
        public var repeats: Int
        public var rows: [Row]
        /// Where and from what it was measured (the accelerator: the booted VM's, if one ran).
        public var provenance: Provenance? = nil
    }

    /// One run of the workload in one environment.
    struct Sample {
        var seconds: Double
        var bytes: Double
        var copiedUp: Double?
    }

    enum Environment {
        case baseline, driver(String), qcow2, raw, booted

        var name: String {
            switch self {
            case .baseline: "plain folder (no copy-on-write)"
            case let .driver(d): d
            case .qcow2: "qcow2 overlay (FUSE export + loop)"
            case .raw: "raw disk image (loop)"
            case .booted: "booted VM (qcow2 overlay)"
            }
        }

        var kind: String {
            switch self {
            case .baseline: "baseline"
            case .driver: "container"
            case .qcow2, .raw, .booted: "vm"
            }
        }
    }

    /// The base the workload runs on: the recipe up to the workload step, built (or found in the
    /// cache), as a root folder, an image layout and a flattened disk.
    struct Base {
        var built: BuiltImage
        var rootfs: String
        var layout: ImageLayout
        var image: ImageLayout.Image
        var disk: String
    }

    /// The workload step as the build would run it, in a root folder, timed.
    struct WorkloadRun {
        var step: Step
        var argv: [String]
        var environment: [KeyValue]
        var workdir: String
        var run: (String) throws -> Double
    }

    public func run() throws -> Result {
        let fm = FileManager.default
        try fm.createDirectory(atPath: workdir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: workdir) }
        let base = try buildBase()
        let archives = "\(cache)/measure/apt-archives"
        try fm.createDirectory(atPath: "\(archives)/partial", withIntermediateDirectories: true)
        let work = try workloadRun(archives: archives)
        let (environments, unavailable) = environmentsToMeasure()

        // Warm-up, not measured: fills the package cache, so that no measured run downloads.
        events.note("cow: warm-up run on a plain folder (fills the package cache; not measured)")
        let warm = "\(workdir)/warm"
        try Command.check("copying the base root", ["cp", "-a", base.rootfs, warm])
        _ = try work.run(warm)
        try fm.removeItem(atPath: warm)

        let measured = try measureRounds(environments, base: base, work: work)
        let rows = environments.enumerated().map { i, e in
            row(e, samples: measured.samples[i] ?? [], ratios: measured.ratios[i] ?? [], bootedNote: measured.bootedNote)
        }
        return Result(workload: workload.name, recipe: workload.recipe.file, step: "\(work.step.location): \(work.step.text)",
                      repeats: repeats, rows: rows + unavailable, provenance: .current(accelerator: measured.accelerator))
    }

    func buildBase() throws -> Base {
        var baseRecipe = workload.recipe
        baseRecipe.steps = Array(baseRecipe.steps.prefix(workload.stepIndex))
        baseRecipe.vm.kernel = .host
        let baseOut = "\(workdir)/base"
        events.note("cow: building the base: \(workload.recipe.name) up to step \(workload.stepIndex + 1)")
        _ = try Builder(recipe: baseRecipe, options: BuildOptions(output: baseOut, cache: cache), events: events).run()
        let built = try BuiltImage(folder: baseOut)
        guard let rootfs = built.bundleRootfs, let layoutPath = built.ociLayout, let disk = built.flattenedDisk else {
            throw BuildError.invalid("\(baseOut): the base build has no bundle, layout or disk")
        }
        let layout = try ImageLayout(opening: layoutPath)
        return Base(built: built, rootfs: rootfs, layout: layout, image: try layout.image(tag: built.tag), disk: disk)
    }

    func workloadRun(archives: String) throws -> WorkloadRun {
        let step = workload.recipe.steps[workload.stepIndex]
        let state = StepConfig.of(workload.recipe, through: workload.stepIndex)
        guard case let .run(cmd) = step.instruction else { throw BuildError.invalid("\(step.location): not a RUN step") }
        let argv = cmd.argv(shell: state.shell)
        let env = step.buildArgs + step.environment
        let sink = events
        return WorkloadRun(step: step, argv: argv, environment: env, workdir: state.workdir) { root in
            var sandbox = Sandbox(root: root, environment: env, workdir: state.workdir, user: state.user)
            sandbox.binds = [.init(host: archives, inside: "/var/cache/apt/archives")]
            let start = Date()
            let r = try sandbox.run(argv, onOutput: { sink.output($0) })
            let seconds = Date().timeIntervalSince(start)
            guard r.status == 0 else {
                throw BuildError.stepFailed(step: step.text, location: step.location, status: r.status, outputTail: Command.tail(r.output, lines: 25))
            }
            return seconds
        }
    }

    /// The plain folder, every driver that works here (the others reported as unavailable), the
    /// qcow2 overlay and the raw disk, and a booted VM when asked.
    func environmentsToMeasure() -> ([Environment], unavailable: [Row]) {
        var environments: [Environment] = [.baseline]
        var unavailable: [Row] = []
        for d in drivers {
            let status = StorageDrivers.probe(d)
            if status.works { environments.append(.driver(d)) } else {
                unavailable.append(Row(kind: "container", storage: d, available: false, reason: status.reason))
            }
        }
        environments += [.qcow2, .raw]
        if bootedVM { environments.append(.booted) }
        return (environments, unavailable)
    }

    /// Every environment once per round, in turn; ratios against the round's plain folder.
    func measureRounds(_ environments: [Environment], base: Base, work: WorkloadRun) throws
        -> (samples: [Int: [Sample]], ratios: [Int: [Double]], bootedNote: String?, accelerator: String?) {
        var samples: [Int: [Sample]] = [:]
        var ratios: [Int: [Double]] = [:]
        var bootedNote: String?, accelerator: String?
        for round in 0..<repeats {
            var baselineSeconds: Double?
            for (i, e) in environments.enumerated() {
                events.note("cow: round \(round + 1)/\(repeats): \(workload.name) on \(e.name)")
                let dir = "\(workdir)/run-\(i)"
                let s: Sample
                switch e {
                case .baseline: s = try onFolder(base.rootfs, dir, work.run)
                case let .driver(d): s = try onDriver(d, image: base.image, layout: base.layout, baseRoot: base.rootfs, dir, work.run)
                case .qcow2: s = try onQcow2(base.disk, filesystem: workload.recipe.vm.filesystem, dir, work.run)
                case .raw: s = try onRaw(base.disk, filesystem: workload.recipe.vm.filesystem, dir, work.run)
                case .booted:
                    let booted = try onBootedVM(base, work: work, dir)
                    s = booted.sample
                    bootedNote = booted.note
                    accelerator = booted.accelerator
                }
                try? FileManager.default.removeItem(atPath: dir)
                samples[i, default: []].append(s)
                if case .baseline = e { baselineSeconds = s.seconds }
                if let b = baselineSeconds, b > 0 { ratios[i, default: []].append(s.seconds / b) }
            }
        }
        return (samples, ratios, bootedNote, accelerator)
    }

    func row(_ e: Environment, samples s: [Sample], ratios: [Double], bootedNote: String?) -> Row {
        let note: String?
        switch e {
        case .baseline: note = "the base root copied to a plain folder; bytes: the folder's growth"
        case .driver: note = "bytes: the writable layer; copied up: files of the base the workload changed"
        case .qcow2: note = "block-level copy-on-write: bytes are the overlay's allocated clusters; no files are copied up"
        case .raw: note = "no copy-on-write (a raw image converted from the base disk); bytes: the image's growth"
        case .booted: note = bootedNote
        }
        return Row(kind: e.kind, storage: e.name, available: true, reason: nil,
                   seconds: Summary(s.map(\.seconds)), ratio: Summary(ratios),
                   bytesWritten: Summary(s.map(\.bytes)), filesCopiedUp: Summary(s.compactMap(\.copiedUp)), note: note)
    }

    func onBootedVM(_ base: Base, work: WorkloadRun, _ dir: String) throws -> (sample: Sample, note: String?, accelerator: String) {
        let report = base.built.report
        guard let kernel = report.outputs.kernel else { throw BuildError.invalid("\(base.built.folder): the base disk has no kernel to boot") }
        let sink = events
        let o = try BootedWorkload(disk: base.disk, kernel: "\(base.built.folder)/\(kernel)",
                                   initrd: report.outputs.initrd.map { "\(base.built.folder)/\($0)" },
                                   argv: work.argv, environment: work.environment, workdir: work.workdir, timeout: vmTimeout,
                                   root: BootCheck.root(of: report.outputs.kernelCommandLine))
            .run(in: dir) { sink.output($0) }
        return (Sample(seconds: o.seconds, bytes: Double(o.bytes), copiedUp: nil), o.note, o.accelerator)
    }

    func onFolder(_ rootfs: String, _ dir: String, _ work: (String) throws -> Double) throws -> Sample {
        try Command.check("copying the base root", ["cp", "-a", rootfs, dir])
        let before = try DiskUsage.allocatedBytes(dir)
        let seconds = try work(dir)
        let after = try DiskUsage.allocatedBytes(dir)
        return Sample(seconds: seconds, bytes: Double(after) - Double(before), copiedUp: nil)
    }

    func onDriver(_ name: String, image: ImageLayout.Image, layout: ImageLayout, baseRoot: String, _ dir: String,
                  _ work: (String) throws -> Double) throws -> Sample {
        let driver = try StorageDrivers.open(name, store: dir)
        defer { try? driver.close() }
        let top = try DriverImport.importImage(image, from: layout, into: driver).last
        let root = try driver.prepare("workload", parent: top)
        defer { try? driver.remove("workload") }
        let seconds = try work(root)
        let bytes = try driver.writableBytes("workload")
        let entries = try LayerCapture.entries(of: try driver.diffSource("workload"))
        let copiedUp = entries.filter { e in
            switch e.kind {
            case .directory, .whiteout, .opaque: return false
            default:
                var st = stat()
                return lstat("\(baseRoot)/\(e.path)", &st) == 0 && (st.st_mode & S_IFMT) != S_IFDIR
            }
        }.count
        return Sample(seconds: seconds, bytes: Double(bytes), copiedUp: Double(copiedUp))
    }

    func onQcow2(_ disk: String, filesystem: String, _ dir: String, _ work: (String) throws -> Double) throws -> Sample {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let overlay = "\(dir)/overlay.qcow2"
        try QcowImage.create(path: overlay, options: Qcow2CreateOptions(
            virtualSize: 0, backingFile: URL(fileURLWithPath: disk).standardizedFileURL.path, backingFormat: "qcow2")).close()
        let seconds = try onMounted(try MountedDisk(image: overlay, mountpoint: "\(dir)/mnt", workdir: dir, filesystem: filesystem,
                                                    target: try CowMeasurement.target(of: disk)), work)
        let img = try QcowImage(path: overlay)
        defer { try? img.close() }
        return Sample(seconds: seconds, bytes: Double(try AllocationMap.compute(img).chain[0].allocatedBytes), copiedUp: nil)
    }

    func onRaw(_ disk: String, filesystem: String, _ dir: String, _ work: (String) throws -> Double) throws -> Sample {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let raw = "\(dir)/disk.raw"
        try Command.check("converting the base disk to raw", ["qemu-img", "convert", "-O", "raw", disk, raw])
        let before = try DiskUsage.allocatedBytes(raw)
        let seconds = try onMounted(try MountedDisk(image: raw, mountpoint: "\(dir)/mnt", workdir: dir, filesystem: filesystem, raw: true,
                                                    target: try CowMeasurement.target(of: disk)), work)
        return Sample(seconds: seconds, bytes: Double(try DiskUsage.allocatedBytes(raw)) - Double(before), copiedUp: nil)
    }

    /// What of a built disk holds its root: the root partition of a `vm-boot=firmware` (GPT) disk,
    /// else the filesystem at byte 0.
    static func target(of disk: String) throws -> MountedDisk.Target {
        let img = try QcowImage(path: disk)
        defer { try? img.close() }
        return try DiskLayout.read(img).map { .partition($0) } ?? .filesystem
    }

    /// Runs the workload on a mounted disk, which is released whatever happens.
    func onMounted(_ mounted: MountedDisk, _ work: (String) throws -> Double) throws -> Double {
        defer { mounted.release() }
        return try work(mounted.mountpoint)
    }
}
