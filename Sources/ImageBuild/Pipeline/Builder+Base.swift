import Foundation
import Host
import Layers
import OCI
import RecipePlan

/// The base phase: the base root folder (made by mmdebstrap, unpacked from an OCI layout, or
/// empty), then the first layer of the container side and the base disk of the VM side.
extension Builder {
    struct Base {
        var key: String
        /// The base as a folder (what the VM's base disk and the first layer are made from), made
        /// only when a side's base entry is not cached: a build whose bases are all hits (here or in
        /// a registry) runs no mmdebstrap and unpacks nothing.
        var root: LazyRoot
        var description: String
        /// For FROM oci:: the layout and image, whose layers the container side keeps.
        var image: (ImageLayout, ImageLayout.Image)?
        /// For FROM NAME:TAG of the local image store: the VM chain that build made (its cache
        /// folder and link names), which the VM side continues when it can.
        var vmChain: LocalImage.VMChain?
    }

    /// The base root folder, made (and cached) when needed. Every reference but `scratch` and
    /// `oci:` is looked for in the local image store first (`LocalImages`), then read as it
    /// is written: `debian:SUITE[-slim]` through mmdebstrap, a registry's reference.
    func prepareBase(in cache: BuildCache) throws -> Base {
        switch recipe.base {
        case .scratch, .ociLayout: break
        default:
            if !recipe.baseReference.contains("@"), let image = LocalImages.find(RecipeParser.storeName(recipe.baseReference), cache: options.cache) {
                return try localBase(image, in: cache)
            }
        }
        switch recipe.base {
        case let .local(name):
            throw BuildError.recipe(RecipeError(recipe.baseLocation, "FROM \(recipe.baseReference): no image \(name) in the local image store (\(LocalImages.folder(cache: options.cache)): what builds with -t NAME[:TAG] made), and it is not debian:SUITE, oci:PATH or REGISTRY/REPO[:TAG]"))
        case let .debian(suite, variant, slim):
            return try debianBase(suite: suite, variant: variant, slim: slim, in: cache)
        case .scratch:
            let root = "\(options.cache)/bases/scratch/root"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            return Base(key: "scratch", root: LazyRoot(ready: root), description: "scratch")
        case let .ociLayout(path, tag):
            return try ociBase(path: path, tag: tag, in: cache)
        case let .registry(reference):
            return try registryBase(reference, in: cache)
        }
    }

    /// An image of the local store: its layout is the container side's base, as `FROM oci:`'s
    /// is, and its VM chain goes with it. The key names both, so a rebuild of that name with
    /// another image or chain gives other keys here.
    func localBase(_ image: LocalImage, in cache: BuildCache) throws -> Base {
        var base = try ociBase(path: "\(options.cache)/\(image.layout)", tag: LocalImages.layoutTag, label: image.reference, in: cache)
        base.key = image.baseKey
        base.description = "\(image.reference) (local image \(image.manifest))"
        base.vmChain = image.vm
        return base
    }

    /// A root made by mmdebstrap, under the lock of its entry (two builds make it once).
    func debianBase(suite: String, variant: String, slim: Bool, in cache: BuildCache) throws -> Base {
        let base = try DebianBase(suite: suite, variant: variant, slim: slim)
        let made = LazyRoot(naming: "\(recipe.baseLocation): making the base") { try self.debianRoot(base, in: cache) }
        return Base(key: base.key, root: made, description: "debian:\(base.name) \(variant) (mmdebstrap)")
    }

    /// While mmdebstrap makes the root for a build with a container side, the root's large files
    /// are compressed for the base layer's capture (`ContainerPass.earlyCompression`), in the CPU
    /// time mmdebstrap leaves: its dpkg mostly runs on one core.
    func debianRoot(_ base: DebianBase, in cache: BuildCache) throws -> LazyRoot.Made {
        let (suite, variant) = (base.name, base.variant)
        let dir = "\(options.cache)/bases/\(base.key.prefix(32))"
        let root = "\(dir)/root"
        var early: EarlyCompression?
        // The entry's folder holds nothing but its root: made afresh, removed if the root is not made.
        let hit = try cache.entry("the base debian:\(suite)", lock: dir + ".lock", check: { Self.checkRoot(root) }) {
            try BuildCache.makingPartial(dir) {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                events.note("base: making debian:\(suite) (\(variant)) with mmdebstrap from the host's apt sources")
                if options.targets.contains(.container) {
                    early = ContainerPass.earlyCompression(watching: DebianBase.partial(root), options: ContainerPass.captureOptions(sourceDateEpoch: nil))
                }
                defer { early?.stop() }
                do {
                    try base.make(at: root, environment: packages?.baseEnvironment ?? [:], onOutput: { [events] in events.output($0) })
                } catch {
                    throw BuildError.invalid("\(recipe.baseLocation): the base debian:\(suite) cannot be made: \(error)")
                }
            }
        }
        return LazyRoot.Made(path: root, hit: hit, early: early)
    }

    /// An OCI image's layers applied to a folder (what the VM's base disk is made from), under
    /// the lock of its entry; a failed or interrupted unpacking leaves nothing.
    /// `label` names the base in notes and errors (`oci:PATH[:TAG]` as the recipe wrote it).
    func ociBase(path: String, tag: String?, label: String? = nil, in cache: BuildCache) throws -> Base {
        let label = label ?? "oci:\(path)\(tag.map { ":" + $0 } ?? "")"
        let full = path.hasPrefix("/") ? path : "\(recipe.context)/\(path)"
        let layout: ImageLayout
        let image: ImageLayout.Image
        do {
            layout = try ImageLayout(opening: full)
            image = try layout.image(tag: tag)
        } catch {
            throw BuildError.recipe(RecipeError(recipe.baseLocation, "FROM \(label): \(error)"))
        }
        let digest = image.manifestDescriptor.digest
        let made = LazyRoot(naming: "\(recipe.baseLocation): unpacking the base") {
            let (path, hit) = try self.ociRoot(label: label, layout: layout, image: image, in: cache)
            return LazyRoot.Made(path: path, hit: hit)
        }
        return Base(key: digest.description, root: made, description: "\(label) \(digest)", image: (layout, image))
    }

    func ociRoot(label: String, layout: ImageLayout, image: ImageLayout.Image, in cache: BuildCache) throws -> (path: String, hit: Bool) {
        let digest = image.manifestDescriptor.digest
        let dir = "\(options.cache)/bases/oci-\(digest.hex.prefix(32))"
        let root = "\(dir)/root"
        let hit = try cache.entry("the base \(label)", lock: dir + ".lock", check: { Self.checkRoot(root) }) {
            events.note("base: unpacking \(label) (\(digest)) into a folder for the VM disk")
            try BuildCache.makingPartial(dir) {
                try FileManager.default.createDirectory(atPath: root + ".partial", withIntermediateDirectories: true)
                for d in image.manifest.layers {
                    _ = try LayerApply.apply(layer: layout.blobs.path(of: d.digest), to: root + ".partial", expecting: d.digest)
                }
                try FileSystem.rename(root + ".partial", to: root)
            }
        }
        return (root, hit)
    }

    /// A base root is complete once it has its name: it is made as `root.partial` and renamed last.
    static func checkRoot(_ root: String) -> BuildCache.Check {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: root, isDirectory: &isDir) && isDir.boolValue ? .valid : .missing
    }

    /// The image configuration the steps start from: the base image's, without its ONBUILD
    /// triggers (they ran in this build, `withTriggers`, and are not handed on).
    func startConfig(_ base: Base, into state: inout State) {
        guard let c = base.image?.1.config.config else { return }
        state.config.image = c
        state.config.image.onBuild = nil
    }

    /// The container side's base, and `steps` run on it: the base image's layers, or the root
    /// captured as the first layer, whose capture goes on beside `steps` once its driver layer is
    /// ready (`ContainerPass.startBase`). The time spent making the base root counts on every
    /// side that needed it, also when another side made it first. A failure of `steps` is the one
    /// thrown when both fail: the base's capture is waited for either way.
    func containerBase<T>(_ base: Base, seconds: Double, on container: ContainerPass, state: State,
                          then steps: () throws -> T) throws -> (base: BuildReport.Measure, steps: T) {
        if let (layout, image) = base.image {
            return (try container.base(image: image, layout: layout, rootSeconds: seconds), try steps())
        }
        let naming = "\(recipe.baseLocation): capturing the base as the first container layer"
        let (_, rootSeconds) = try base.root.counted {
            try BuildError.naming(naming) {
                try container.startBase(key: state.plan.rootKey, root: base.root.path, early: base.root.takeEarly,
                                        description: base.description, rootSeconds: seconds)
            }
        }
        let done = Result { try steps() }
        let captured = Result { try BuildError.naming(naming) { try container.finishBase() } }
        let result = try done.get()
        var m = try captured.get()
        m.seconds += rootSeconds
        return (m, result)
    }

    /// The VM side's base: the chain of the image it continues, or a base disk made of the root.
    func vmBase(_ base: Base, seconds: Double, on vm: VMPass, state: State) throws -> BuildReport.Measure {
        if let chain = base.vmChain, let m = try vm.continueChain(folder: "\(options.cache)/\(chain.folder)", links: chain.links) {
            events.note("vm: continuing the chain of \(recipe.baseReference) (\(chain.links.count) links)")
            return m
        }
        if base.vmChain != nil {
            events.note("vm: the VM chain of \(recipe.baseReference) is of another disk layout (vm-size, filesystem, clusters, kernel) or no longer in the cache: a base disk is made from its image instead")
        }
        var m = try base.root.counting {
            try BuildError.naming("\(recipe.baseLocation): making the VM base disk") {
                try vm.base(key: state.plan.rootKey, root: base.root.path, sourceDateEpoch: sourceDateEpoch, rootSeconds: seconds)
            }
        }
        m.cacheHit = m.cacheHit && base.root.hit
        return m
    }
}

/// A base root folder made on first use, once (`Builder.Base.root`).
final class LazyRoot: @unchecked Sendable {
    /// The folder, whether it was a cache hit, and the gzip members of its large files compressed
    /// while it was made (stopped; for the container side's base capture).
    struct Made {
        var path: String
        var hit: Bool
        var early: EarlyCompression?
    }

    private let make: () throws -> Made
    /// Held while the root is made: the side that asks second waits for it.
    private let lock = NSLock()
    private var made: Made?
    /// The time making it took.
    private(set) var seconds = 0.0
    private var uses = 0

    init(naming: String, _ make: @escaping () throws -> Made) {
        self.make = { try BuildError.naming(naming, make) }
    }

    init(ready path: String) {
        make = { Made(path: path, hit: true) }
    }

    /// The members compressed while the root was made, once (the base capture takes them).
    func takeEarly() -> EarlyCompression? {
        lock.withLock {
            defer { made?.early = nil }
            return made?.early
        }
    }

    /// The folder, made now if no side asked for it before.
    func path() throws -> String {
        try lock.withLock {
            uses += 1
            if let made { return made.path }
            let start = Date()
            let m = try make()
            seconds = Date().timeIntervalSince(start)
            made = m
            return m.path
        }
    }

    /// Whether the root was found in the cache (or never needed).
    var hit: Bool { lock.withLock { made?.hit ?? true } }

    /// A side's base measure, which counts the making of the root when the side used it, also
    /// when an earlier side made it (the time `work` itself measured covers only its own making).
    func counting(_ work: () throws -> BuildReport.Measure) throws -> BuildReport.Measure {
        var (m, before) = try counted(work)
        m.seconds += before
        return m
    }

    /// `work`'s result, and the seconds of the root's making that it did not measure itself: the
    /// time an earlier side spent making the root, when `work` used it.
    func counted<T>(_ work: () throws -> T) throws -> (T, Double) {
        let (before, usesBefore) = lock.withLock { (seconds, uses) }
        let r = try work()
        return (r, lock.withLock({ uses }) > usesBefore ? before : 0)
    }
}
