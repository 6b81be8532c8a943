import Foundation
import Host

/// A full copy of the parent per layer: no copy-on-write at all, the baseline every other driver
/// is measured against. The diff is found by comparing the tree with what it was when prepared.
///
/// ```
/// layers/<id>/root            the layer's whole tree
/// layers/<id>/baseline.json   the tree's metadata (inodes included) right after the copy
/// ```
final class VFSDriver: StorageDriver {
    let store: String
    let name = "vfs"

    init(store: String) throws {
        self.store = store
        try createLayersDir()
    }

    func prepare(_ id: String, parent: String?) throws -> String {
        try createLayerDir(id, parent: parent)
        let dir = layerDir(id)
        do {
            if let p = parent {
                try FileSystem.copyTree(from: layerDir(p) + "/root", to: dir + "/root")
            } else {
                try FileSystem.makeDirectories(dir + "/root")
            }
            try Baseline.scan(dir + "/root").save(to: dir + "/baseline.json")
        } catch {
            try? FileSystem.removeTree(dir)
            throw error
        }
        return dir + "/root"
    }

    func diffSource(_ id: String) throws -> DiffSource {
        let dir = layerDir(id)
        guard FileSystem.exists(dir + "/root") else { throw LayersError.layerNotFound(driver: name, layer: id) }
        return .compare(root: dir + "/root", baseline: try Baseline.load(dir + "/baseline.json"))
    }

    func release(_ id: String) throws {}

    func remove(_ id: String) throws { try FileSystem.removeTree(layerDir(id)) }

    func writableBytes(_ id: String) throws -> UInt64 { try FileSystem.allocatedBytes(layerDir(id) + "/root") }

    func close() throws {}
}
