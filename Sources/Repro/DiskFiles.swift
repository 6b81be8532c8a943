import Foundation
import Host
import Layers

/// The files of VM disks' filesystems (ext4 on the whole disk, or a `vm-boot=firmware` disk's
/// root partition, as the build makes them), read
/// from raw copies through debugfs's `rdump`: no root, no mount, no appliance. Each disk's tree
/// is copied out into `scratch`, read as a `LayerInventory` and removed (on Ctrl-C too).
public enum DiskFiles {
    public static func inventories(of disks: [String], scratch: String, keeping wanted: Set<String> = []) throws -> [LayerInventory] {
        let names = try Ext4Names(disks: disks, scratch: scratch)
        defer { names.remove() }
        return try names.raws.enumerated().map { i, raw in
            let tree = "\(scratch)/.imgbench-disk-files-\(getpid())-\(i)"
            let removeTree = Cleanup.register("remove \(tree)") { try? FileSystem.removeTree(tree) }
            defer { Cleanup.run(removeTree) }
            try FileSystem.makeDirectories(tree)
            _ = try names.debugfs(["rdump / \"\(tree)\""], on: raw, what: "copying the files of \(disks[i]) out with debugfs")
            return try LayerInventory.read(tree: tree, keeping: wanted)
        }
    }
}
