import Foundation
import Host
import Layers
import OCI

/// A build's VM disk as a KubeVirt containerDisk image (KubeVirt user guide, "Disks and
/// Volumes: containerDisk"): an image of one layer whose tar holds the qcow2 at
/// `/disk/NAME.qcow2`, owned by KubeVirt's qemu user (107:107), as `ADD --chown=107:107 NAME.qcow2
/// /disk/` in a `FROM scratch` Containerfile makes it. The disk boots with an external kernel
/// (README, "VM pass"), so the same layer carries it and its initramfs at `/boot/vmlinuz` and
/// `/boot/initrd.img`, where KubeVirt's `kernelBoot.container` (`kernelPath`, `initrdPath`) and
/// `imgbench pull` find them. The layer is an uncompressed tar: the qcow2 is already sparse, and
/// it is unpacked as is.
public enum ContainerDisk {
    /// KubeVirt's qemu user and group.
    public static let owner: UInt32 = 107
    public static let diskFolder = "disk"
    public static let bootFolder = "boot"

    /// The files of the image: the disk, the kernel and the initramfs.
    public struct Files: Sendable {
        public var disk: String
        public var kernel: String
        public var initrd: String?
        /// The disk's name in `/disk/` (the recipe's name).
        public var name: String

        public init(disk: String, kernel: String, initrd: String?, name: String) {
            self.disk = disk
            self.kernel = kernel
            self.initrd = initrd
            self.name = name
        }
    }

    /// The path of the disk inside the image.
    public static func diskPath(name: String) -> String { "\(diskFolder)/\(name).qcow2" }

    /// Writes the image into a layout (tagged `tag`) and returns its manifest's descriptor.
    public static func write(_ files: Files, into layout: ImageLayout, tag: String, progress: (@Sendable (UInt64, UInt64) -> Void)?) throws -> Descriptor {
        var options = CaptureOptions(compression: .none, sourceDateEpoch: CaptureOptions.environmentEpoch, threads: 1)
        options.progress = progress
        let layer = try LayerCapture.write(entries(files), into: layout.blobs, options: options)
        let history = History(createdBy: "imgbench push: KubeVirt containerDisk /\(diskPath(name: files.name)), boot files in /\(bootFolder)/")
        return try layout.writeImage(layers: [layer], config: nil, history: [history], created: nil, tag: tag)
    }

    static func entries(_ f: Files) throws -> [LayerEntry] {
        let mtime = try Int64(FileSystem.lstat(f.disk).st_mtim.tv_sec)
        let folder = { (name: String) in LayerEntry(path: name, kind: .directory, mode: 0o755, uid: owner, gid: owner, mtime: mtime) }
        var list = [folder(bootFolder), try LayerEntry.hostFile(f.kernel, as: "\(bootFolder)/vmlinuz", uid: owner, gid: owner)]
        if let initrd = f.initrd {
            list.append(try LayerEntry.hostFile(initrd, as: "\(bootFolder)/initrd.img", uid: owner, gid: owner))
        }
        list += [folder(diskFolder), try LayerEntry.hostFile(f.disk, as: diskPath(name: f.name), uid: owner, gid: owner)]
        return list
    }
}
