import Foundation
import Layers
import OCI
import QcowIO
import RecipePlan

/// What a build remembers of the outputs it wrote, so that the next build into the same folder
/// can keep the two outputs that take long to write, the runtime bundle and the flattened disk,
/// when they would come out the same and are provably untouched since: the bundle for the same
/// layers, runtime settings and name (`bundleKey`; not the image digest, which a new `created`
/// time changes), the disk for the same chain tip and cluster size, and both with a
/// `TreeStamp` that still holds (so a `runc run` that wrote into the rootfs, or a VM that wrote
/// to the disk, makes the next build write them afresh). Kept as `.imgbench-outputs.json` in the
/// output folder, written after the folder is in place.
struct OutputStamps: Codable {
    static let fileName = ".imgbench-outputs.json"
    static let bundleEntries = ["bundle/config.json", "bundle/rootfs"]
    static let disk = "vm/disk.qcow2"

    struct Bundle: Codable {
        var key: String
        var stamp: TreeStamp
    }

    /// What a bundle is made from: the layers in order, the image's run settings and the hostname.
    static func bundleKey(layers: [Digest], config: ContainerConfig, hostname: String) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let settings = String(decoding: try enc.encode(config), as: UTF8.self)
        return BuildPlan.digest(["imgbench-bundle-v1", hostname, settings] + layers.map(\.description))
    }

    struct Disk: Codable {
        var chainTip: FileIdentity
        var clusterSize: Int
        var stamp: TreeStamp
    }

    var bundle: Bundle?
    var disk: Disk?

    static func read(folder: String) -> OutputStamps? {
        guard let d = FileManager.default.contents(atPath: "\(folder)/\(fileName)") else { return nil }
        return try? JSONDecoder().decode(OutputStamps.self, from: d)
    }

    func write(folder: String) throws {
        try CanonicalJSON.pretty(self).write(to: URL(fileURLWithPath: "\(folder)/\(Self.fileName)"), options: .atomic)
    }

    /// The previous bundle in `folder`, if it is the one this build would write.
    func reusableBundle(in folder: String, key: String) -> String? {
        guard let b = bundle, b.key == key,
              b.stamp.holds(for: Self.bundleEntries.map { "\(folder)/\($0)" }) else { return nil }
        return "\(folder)/bundle"
    }

    /// The previous flattened disk in `folder`, if it is the one this build would write.
    func reusableDisk(in folder: String, chainTip: String, clusterSize: Int) -> String? {
        guard let d = disk, d.clusterSize == clusterSize, let tip = FileIdentity(path: chainTip), d.chainTip == tip,
              d.stamp.holds(for: ["\(folder)/\(Self.disk)"]) else { return nil }
        return "\(folder)/\(Self.disk)"
    }
}

/// Which file a path is, and its size and modification time: a file replaced or written under the
/// same name no longer matches. (Hard links to it, which change only its ctime, do.)
struct FileIdentity: Codable, Equatable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var mtimeNanoseconds: Int64

    init?(path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        mtimeNanoseconds = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }
}
