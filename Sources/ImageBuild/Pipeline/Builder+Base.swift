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
        /// The base as a folder (what the VM's base disk is made from).
        var root: String
        var hit: Bool
        var description: String
        /// For FROM oci:: the layout and image, whose layers the container side keeps.
        var image: (ImageLayout, ImageLayout.Image)?
    }

    /// The base root folder, made (and cached) when needed.
    func prepareBase(in cache: BuildCache) throws -> Base {
        switch recipe.base {
        case let .debian(suite, variant):
            return try debianBase(suite: suite, variant: variant, in: cache)
        case .scratch:
            let root = "\(options.cache)/bases/scratch/root"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            return Base(key: "scratch", root: root, hit: true, description: "scratch")
        case let .ociLayout(path, tag):
            return try ociBase(path: path, tag: tag, in: cache)
        }
    }

    /// A root made by mmdebstrap, under the lock of its entry (two builds make it once).
    func debianBase(suite: String, variant: String, in cache: BuildCache) throws -> Base {
        let base = try DebianBase(suite: suite, variant: variant)
        let dir = "\(options.cache)/bases/\(base.key.prefix(32))"
        let root = "\(dir)/root"
        // The entry's folder holds nothing but its root: made afresh, removed if the root is not made.
        let hit = try cache.entry("the base debian:\(suite)", lock: dir + ".lock", check: { Self.checkRoot(root) }) {
            try BuildCache.makingPartial(dir) {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                events.note("base: making debian:\(suite) (\(variant)) with mmdebstrap from the host's apt sources")
                do {
                    try base.make(at: root, onOutput: { [events] in events.output($0) })
                } catch {
                    throw BuildError.invalid("\(recipe.baseLocation): the base debian:\(suite) cannot be made: \(error)")
                }
            }
        }
        return Base(key: base.key, root: root, hit: hit, description: "debian:\(suite) \(variant) (mmdebstrap)")
    }

    /// An OCI image's layers applied to a folder (what the VM's base disk is made from), under
    /// the lock of its entry; a failed or interrupted unpacking leaves nothing.
    func ociBase(path: String, tag: String?, in cache: BuildCache) throws -> Base {
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
        let dir = "\(options.cache)/bases/oci-\(digest.hex.prefix(32))"
        let root = "\(dir)/root"
        let hit = try cache.entry("the base oci:\(path)", lock: dir + ".lock", check: { Self.checkRoot(root) }) {
            events.note("base: unpacking \(path) (\(digest)) into a folder for the VM disk")
            try BuildCache.makingPartial(dir) {
                try FileManager.default.createDirectory(atPath: root + ".partial", withIntermediateDirectories: true)
                for d in image.manifest.layers {
                    _ = try LayerApply.apply(layer: layout.blobs.path(of: d.digest), to: root + ".partial", expecting: d.digest)
                }
                try FileSystem.rename(root + ".partial", to: root)
            }
        }
        return Base(key: digest.description, root: root, hit: hit, description: "oci:\(path) \(digest)", image: (layout, image))
    }

    /// A base root is complete once it has its name: it is made as `root.partial` and renamed last.
    static func checkRoot(_ root: String) -> BuildCache.Check {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: root, isDirectory: &isDir) && isDir.boolValue ? .valid : .missing
    }

    /// The base on each target; the time spent making the base root counts on both.
    func buildBase(_ base: Base, seconds: Double, into state: inout State) throws {
        if let container = state.container {
            let m: BuildReport.Measure
            if let (layout, image) = base.image {
                m = try container.base(image: image, layout: layout, rootSeconds: seconds)
                if let c = image.config.config { state.config.image = c }
            } else {
                m = try BuildError.naming("\(recipe.baseLocation): capturing the base as the first container layer") {
                    try container.base(key: state.plan.rootKey, root: base.root, description: base.description, rootSeconds: seconds)
                }
            }
            state.base.container = m
        }
        if let vm = state.vm {
            var m = try BuildError.naming("\(recipe.baseLocation): making the VM base disk") {
                try vm.base(key: state.plan.rootKey, root: base.root, sourceDateEpoch: sourceDateEpoch, rootSeconds: seconds)
            }
            m.cacheHit = m.cacheHit && base.hit
            state.base.vm = m
        }
    }
}
