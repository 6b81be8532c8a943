import Crypto
import Foundation
import Host
import QcowIO
import RecipePlan

/// The VM's first chain link: a filesystem-only disk (no partition table) made from the base root
/// with `mkfs -d`, written as a qcow2 by QcowIO.
///
/// Why filesystem-only with an external kernel rather than a partitioned disk with a bootloader:
/// the same root folder becomes the disk without a loop-mounted partition table or a bootloader
/// installed from a chroot onto a device; every step's overlay then maps one-to-one to blocks of
/// one filesystem; and QEMU boots it directly with the image's own kernel and initramfs
/// (`-kernel -initrd -append root=/dev/vda`), which `imgbench boot` and the hand-off use.
public enum BaseDisk {
    /// Makes `qcow2` from the folder `root`. The raw disk is sparse and removed after conversion.
    ///
    /// The same root, settings and `seed` (the base's cache key) make the same bytes: the
    /// filesystem UUID and the directory hash seed are derived from `seed` rather than drawn at
    /// random, and with `sourceDateEpoch` every time mke2fs writes (superblock, inodes it
    /// creates) is that time. Files keep the mtimes they have in `root`, and mke2fs -d adds them
    /// in the order the folder lists them, which for one cached root folder is always the same.
    @discardableResult
    public static func make(root: String, qcow2: String, settings: VMSettings, sourceDateEpoch: Int? = nil,
                            seed: String? = nil) throws -> Qcow2ConvertStats {
        let raw = qcow2 + ".raw"
        defer { unlink(raw) }
        let fd = open(raw, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0, ftruncate(fd, off_t(settings.size)) == 0 else {
            throw HostError.io(path: raw, message: String(cString: strerror(errno)))
        }
        close(fd)
        let uuid = filesystemUUID(seed: seed ?? "\(root)\n\(settings.size)")
        var env = ["PATH": Sandbox.defaultPath]
        if let t = sourceDateEpoch { env["E2FSPROGS_FAKE_TIME"] = "\(t)" }
        switch settings.filesystem {
        case "ext4":
            try Command.check("making the base disk's ext4 filesystem", [
                "mkfs.ext4", "-q", "-F", "-L", "imgbench-root", "-U", uuid,
                "-E", "root_owner=0:0,lazy_itable_init=1,nodiscard,hash_seed=\(uuid)", "-d", root, raw,
            ], environment: env)
        default:
            throw BuildError.invalid("vm-filesystem=\(settings.filesystem): only ext4 disks can be populated from a folder here")
        }
        return try Qcow2Converter.convert(source: try RawImage(path: raw), to: qcow2,
                                          options: Qcow2ConvertOptions(clusterSize: settings.clusterSize))
    }

    /// A UUID in the form of a version 4 (random) one, whose bits come from SHA-256 of `seed`:
    /// the same seed, the same UUID.
    static func filesystemUUID(seed: String) -> String {
        var b = Array(SHA256.hash(data: Data(seed.utf8)).prefix(16))
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        let hex = b.map { String(format: "%02x", $0) }.joined()
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }
}
