import Foundation
import Host
import OCI

/// unionfs-fuse in copy-on-write mode: one read-write branch over the parents' branches,
/// read-only. Not aufs, though it is the nearest thing to aufs' branch model this kernel allows.
/// Deletions are recorded as `.unionfs-fuse/PATH_HIDDEN~` in the read-write branch.
final class UnionfsDriver: StorageDriver {
    let store: String
    let name = "unionfs"

    init(store: String) throws {
        self.store = store
        try FileSystem.makeDirectories(store + "/unionfs/layers")
    }

    func prepare(_ id: String, parent: String?) throws -> String {
        try createLayerDir(id, parent: parent)
        let dir = layerDir(id)
        for d in ["diff", "merged"] { try FileSystem.makeDirectories(dir + "/" + d) }
        let branches = try chain(id).enumerated().map { i, l in layerDir(l) + "/diff=" + (i == 0 ? "RW" : "RO") }
        do {
            try Command.output(["unionfs", "-o", "cow,allow_other,use_ino,suid,dev,hide_meta_files",
                            branches.joined(separator: ":"), dir + "/merged"])
            Mounts.track(dir + "/merged")
        } catch {
            try? FileSystem.removeTree(dir)
            throw error
        }
        return dir + "/merged"
    }

    func diffSource(_ id: String) throws -> DiffSource {
        guard Mounts.isMounted(layerDir(id) + "/merged") else {
            throw LayersError.driverFailure(driver: name, layer: id, message: "capture needs the layer prepared (mounted)")
        }
        // A FUSE daemon may still hold written data that the branch does not show yet.
        sync()
        return .unionfsUpper(upper: layerDir(id) + "/diff", merged: layerDir(id) + "/merged")
    }

    func release(_ id: String) throws { try Mounts.unmount(layerDir(id) + "/merged") }

    func remove(_ id: String) throws {
        try release(id)
        try FileSystem.removeTree(layerDir(id))
    }

    func writableBytes(_ id: String) throws -> UInt64 { try FileSystem.allocatedBytes(layerDir(id) + "/diff") }

    func close() throws {
        for id in (try? FileSystem.children(root + "/layers")) ?? [] where Mounts.isMounted(layerDir(id) + "/merged") {
            try release(id)
        }
    }
}
