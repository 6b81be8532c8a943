import Foundation
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

    /// The base on each target; the time spent making the base root counts on both.
    func buildBase(_ base: Base, seconds: Double, into state: inout State) throws {
        if let container = state.container {
            var m: BuildReport.Measure
            if let (layout, image) = base.image {
                m = try container.base(image: image, layout: layout)
                if let c = image.config.config { state.config.image = c }
            } else {
                m = try container.base(key: state.plan.rootKey, root: base.root, description: base.description)
            }
            m.seconds += seconds
            state.base.container = m
        }
        if let vm = state.vm {
            var m = try vm.base(key: state.plan.rootKey, root: base.root, sourceDateEpoch: options.sourceDateEpoch)
            m.seconds += seconds
            m.cacheHit = m.cacheHit && base.hit
            state.base.vm = m
        }
    }
}
