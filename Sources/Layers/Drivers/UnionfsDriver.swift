import Foundation
import Host

/// unionfs-fuse in copy-on-write mode: one read-write branch over the parents' branches,
/// read-only. Not aufs, though it is the nearest thing to aufs' branch model this kernel allows.
/// Deletions are recorded as `.unionfs-fuse/PATH_HIDDEN~` in the read-write branch.
final class UnionfsDriver: UnionMountDriver {
    let store: String
    let name = "unionfs"

    init(store: String) throws {
        self.store = store
        try createLayersDir()
    }

    func mount(_ id: String) throws {
        let branches = try chain(id).enumerated().map { i, l in diffDir(l) + "=" + (i == 0 ? "RW" : "RO") }
        try Command.output(["unionfs", "-o", "cow,allow_other,use_ino,suid,dev,hide_meta_files",
                            branches.joined(separator: ":"), mergedDir(id)])
        Mounts.track(mergedDir(id))
    }

    func diffSource(_ id: String) throws -> DiffSource {
        guard Mounts.isMounted(mergedDir(id)) else {
            throw LayersError.driverFailure(driver: name, layer: id, message: "capture needs the layer prepared (mounted)")
        }
        // A FUSE daemon may still hold written data that the branch does not show yet.
        sync()
        return .unionfsUpper(upper: diffDir(id), merged: mergedDir(id))
    }
}
