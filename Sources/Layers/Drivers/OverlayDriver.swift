import Foundation
import Host

/// Kernel overlayfs, or the same layout mounted by fuse-overlayfs in user space.
///
/// ```
/// layers/<id>/diff     the upper directory: what this layer changed (a lower dir once released)
/// layers/<id>/work     overlayfs' work directory
/// layers/<id>/merged   the writable root while prepared
/// ```
final class OverlayDriver: UnionMountDriver {
    let store: String
    let fuse: Bool
    var name: String { fuse ? "fuse-overlayfs" : "overlay" }

    init(store: String, fuse: Bool) throws {
        self.store = store
        self.fuse = fuse
        try FileSystem.makeDirectories(root + "/empty")
    }

    var scratchDirectories: [String] { ["work"] }

    func mount(_ id: String) throws {
        let dir = layerDir(id)
        let lowers = try chain(id).dropFirst().map { diffDir($0) }
        let lower = lowers.isEmpty ? root + "/empty" : lowers.joined(separator: ":")
        let options = "lowerdir=\(lower),upperdir=\(dir)/diff,workdir=\(dir)/work"
        // mount(2) takes one page of options; say so rather than let the kernel refuse obscurely.
        guard options.utf8.count < 4000 else {
            throw LayersError.driverFailure(
                driver: name, layer: id,
                message: "a chain of \(lowers.count) lower layers makes \(options.utf8.count) bytes of mount options, more than one page; use a shorter store path or squash layers")
        }
        if fuse {
            try Command.output(["fuse-overlayfs", "-o", options, dir + "/merged"])
            Mounts.track(dir + "/merged")
        } else {
            // No redirects or metacopy: every change is a whole entry in the upper directory.
            try Mounts.mount(source: "overlay", target: dir + "/merged", type: "overlay",
                             options: options + ",redirect_dir=off,metacopy=off,index=off")
        }
    }

    func diffSource(_ id: String) throws -> DiffSource {
        guard FileSystem.exists(diffDir(id)) else { throw LayersError.layerNotFound(driver: name, layer: id) }
        // A FUSE daemon may still hold written data that the upper directory does not show yet.
        if fuse { sync() }
        return .overlayUpper(diffDir(id))
    }
}
