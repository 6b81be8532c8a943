import Crypto
import Foundation
import Host
import QcowIO
import RecipePlan

/// The VM's first chain link: a filesystem-only disk (no partition table) made from the base root
/// with `mkfs -d`, written as a qcow2 by QcowIO; with `vm-boot=firmware`, a GPT disk
/// (`DiskLayout`) whose root partition is that filesystem, made at its offset, and whose ESP is
/// an empty FAT32 (the finalisation installs the bootloader).
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
        var extended = "root_owner=0:0,lazy_itable_init=1,nodiscard,hash_seed=\(uuid)"
        var blocks: [String] = []
        if settings.boot == .firmware {
            let layout = DiskLayout.plan(size: settings.size, seed: seed ?? "\(root)\n\(settings.size)")
            try partition(raw, layout: layout, environment: env)
            extended += ",offset=\(layout.root.offset)"
            // With an offset mke2fs must be told the size, or it fills the disk to its end.
            blocks = ["\(layout.root.size / 4096)"]
        }
        switch settings.filesystem {
        case "ext4":
            try Command.check("making the base disk's ext4 filesystem", [
                "mkfs.ext4", "-q", "-F", "-L", "imgbench-root", "-U", uuid, "-b", "4096",
                "-E", extended, "-d", root, raw,
            ] + blocks, environment: env)
        default:
            throw BuildError.invalid("vm-filesystem=\(settings.filesystem): only ext4 disks can be populated from a folder here")
        }
        return try Qcow2Converter.convert(source: try RawImage(path: raw), to: qcow2,
                                          options: Qcow2ConvertOptions(clusterSize: settings.clusterSize))
    }

    /// Writes the GPT of `layout` into the raw disk and an empty FAT32 filesystem into its ESP
    /// (written later with mtools: nothing mounts it on the host, whose kernel may lack vfat).
    static func partition(_ raw: String, layout: DiskLayout.Plan, environment: [String: String]) throws {
        try Command.check("writing the base disk's partition table", ["sfdisk", "-q", "--no-reread", "--no-tell-kernel", raw],
                          environment: environment, input: Data(layout.sfdiskScript.utf8))
        // One sector per cluster: a 126 MiB FAT32 then has enough clusters to be FAT32.
        try Command.check("making the base disk's EFI system partition", [
            "mkfs.fat", "-F", "32", "-s", "1", "-n", "ESP", "-i", layout.espVolumeID, "--invariant",
            "--offset", "\(layout.esp.offset / DiskLayout.sector)", raw, "\(layout.esp.size / 1024)",
        ], environment: environment)
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
