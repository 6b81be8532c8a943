import Foundation
import Host
import OCI

/// Kernel overlayfs, or the same layout mounted by fuse-overlayfs in user space.
///
/// ```
/// layers/<id>/diff     the upper directory: what this layer changed (a lower dir once released)
/// layers/<id>/work     overlayfs' work directory
/// layers/<id>/merged   the writable root while prepared
/// ```
final class OverlayDriver: StorageDriver {
    let store: String
    let fuse: Bool
    var name: String { fuse ? "fuse-overlayfs" : "overlay" }

    init(store: String, fuse: Bool) throws {
        self.store = store
        self.fuse = fuse
        try FileSystem.makeDirectories(store + "/" + (fuse ? "fuse-overlayfs" : "overlay") + "/empty")
    }

    func prepare(_ id: String, parent: String?) throws -> String {
        try createLayerDir(id, parent: parent)
        let dir = layerDir(id)
        for d in ["diff", "work", "merged"] { try FileSystem.makeDirectories(dir + "/" + d) }
        do {
            try mount(id)
        } catch {
            try? FileSystem.removeTree(dir)
            throw error
        }
        return dir + "/merged"
    }

    func mount(_ id: String) throws {
        let dir = layerDir(id)
        let lowers = try chain(id).dropFirst().map { layerDir($0) + "/diff" }
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
        guard FileSystem.exists(layerDir(id) + "/diff") else { throw LayersError.layerNotFound(driver: name, layer: id) }
        // A FUSE daemon may still hold written data that the upper directory does not show yet.
        if fuse { sync() }
        return .overlayUpper(layerDir(id) + "/diff")
    }

    func release(_ id: String) throws {
        try Mounts.unmount(layerDir(id) + "/merged")
    }

    func remove(_ id: String) throws {
        try release(id)
        try FileSystem.removeTree(layerDir(id))
    }

    func writableBytes(_ id: String) throws -> UInt64 {
        try FileSystem.allocatedBytes(layerDir(id) + "/diff")
    }

    func close() throws {
        for id in (try? FileSystem.children(root + "/layers")) ?? [] where Mounts.isMounted(layerDir(id) + "/merged") {
            try release(id)
        }
    }
}
