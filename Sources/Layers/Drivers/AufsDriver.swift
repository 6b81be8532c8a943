import Foundation
import Host

/// aufs, when the kernel has it: one read-write branch over the parents' branches. aufs writes
/// whiteouts as `.wh.NAME` and opaque directories as `.wh..wh..opq` itself, which is where the OCI
/// layer format comes from. `StorageDrivers.open` refuses it, naming the alternatives, on a kernel
/// without aufs (mainline Linux has never had it).
final class AufsDriver: UnionMountDriver {
    let store: String
    let name = "aufs"

    init(store: String) throws {
        self.store = store
        try createLayersDir()
    }

    func mount(_ id: String) throws {
        let branches = try chain(id).enumerated().map { i, l in diffDir(l) + "=" + (i == 0 ? "rw" : "ro+wh") }
        try Mounts.mount(source: "none", target: mergedDir(id), type: "aufs", options: "br=" + branches.joined(separator: ":"))
    }

    func diffSource(_ id: String) throws -> DiffSource { .aufsUpper(diffDir(id)) }
}
