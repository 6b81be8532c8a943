import Foundation
import Host
import OCI

/// aufs, when the kernel has it: one read-write branch over the parents' branches. aufs writes
/// whiteouts as `.wh.NAME` and opaque directories as `.wh..wh..opq` itself, which is where the OCI
/// layer format comes from. `StorageDrivers.open` refuses it, naming the alternatives, on a kernel
/// without aufs (mainline Linux has never had it).
final class AufsDriver: StorageDriver {
    let store: String
    let name = "aufs"

    init(store: String) throws {
        self.store = store
        try FileSystem.makeDirectories(store + "/aufs/layers")
    }

    func prepare(_ id: String, parent: String?) throws -> String {
        try createLayerDir(id, parent: parent)
        let dir = layerDir(id)
        for d in ["diff", "merged"] { try FileSystem.makeDirectories(dir + "/" + d) }
        let branches = try chain(id).enumerated().map { i, l in layerDir(l) + "/diff=" + (i == 0 ? "rw" : "ro+wh") }
        do {
            try Mounts.mount(source: "none", target: dir + "/merged", type: "aufs", options: "br=" + branches.joined(separator: ":"))
        } catch {
            try? FileSystem.removeTree(dir)
            throw error
        }
        return dir + "/merged"
    }

    func diffSource(_ id: String) throws -> DiffSource { .aufsUpper(layerDir(id) + "/diff") }
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
