import Foundation
import Host
import OCI

/// Unpacking an image onto a storage driver: one driver layer per image layer, each prepared on
/// the one below, the layer applied into it, then released. Driver layers are named by their
/// chain ID (as Docker names them: the digest of the chain below and this layer's diff_id), so
/// images that share their lower layers share them in the driver too.
public enum DriverImport {
    /// The chain IDs of a list of diff_ids: `chain[0] = diff[0]`, `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
    public static func chainIDs(_ diffIDs: [Digest]) -> [Digest] {
        var result: [Digest] = []
        for d in diffIDs {
            if let last = result.last {
                result.append(Digest.of(Data("\(last) \(d)".utf8)))
            } else {
                result.append(d)
            }
        }
        return result
    }

    /// Applies the image's layers that the driver does not have yet and returns the driver layer
    /// ids, bottom first. The last one is the image's top, ready to be a parent.
    @discardableResult
    public static func importImage(_ image: ImageLayout.Image, from layout: ImageLayout, into driver: StorageDriver) throws -> [String] {
        let ids = chainIDs(image.config.rootfs.diffIDs).map(\.hex)
        var parent: String?
        for (i, id) in ids.enumerated() {
            defer { parent = id }
            if FileSystem.exists(driver.layerDir(id)) { continue }
            let d = image.manifest.layers[i]
            do {
                let root = try driver.prepare(id, parent: parent)
                try LayerApply.apply(layer: layout.blobs.path(of: d.digest), to: root, expecting: d.digest)
                try driver.release(id)
            } catch {
                try? driver.remove(id)
                throw error
            }
        }
        return ids
    }
}
