import Foundation
import Host

/// GRUB for both firmwares of a `vm-boot=firmware` disk (`DiskLayout`), from the build host's GRUB
/// (grub-pc-bin, grub-efi-amd64-bin), as Debian's cloud images boot: the image gets no grub
/// package, and one grub.cfg serves both.
///
/// - BIOS (SeaBIOS): `grub-install --target=i386-pc` puts boot.img in the protective MBR, core.img
///   in the BIOS boot partition and its modules in /boot/grub/i386-pc.
/// - UEFI (OVMF): a standalone `BOOTX64.EFI` with the modules it needs built in, at the removable
///   media path `\EFI\BOOT\` of the ESP (no NVRAM entry needed). It is written with mtools:
///   grub-install's x86_64-efi target wants the ESP mounted, and the host kernel may lack vfat.
///
/// grub.cfg is written here, never by grub-mkconfig, which probes the build host.
public enum Bootloader {
    /// The modules built into BOOTX64.EFI.
    static let efiModules = ["part_gpt", "ext2", "fat", "search", "search_fs_uuid", "normal", "linux", "configfile", "echo",
                             "serial", "terminal", "gzio", "efi_gop", "all_video", "sleep", "test"]

    /// The menu: the kernel on the root partition found by its UUID, the console on ttyS0 too.
    public static func config(rootUUID: String, kernel: String, initrd: String?) -> String {
        var s = """
        # Written by imgbench (vm-boot=firmware), for BIOS and UEFI.
        set timeout=1
        set default=0
        serial --unit=0 --speed=115200
        terminal_input serial console
        terminal_output serial console
        insmod part_gpt
        insmod ext2
        search --no-floppy --fs-uuid --set=root \(rootUUID)
        menuentry 'imgbench' {
            linux \(kernel) root=UUID=\(rootUUID) ro console=tty0 console=ttyS0,115200n8
        
        """
        if let initrd { s += "    initrd \(initrd)\n" }
        return s + "}\n"
    }

    /// Installs GRUB on the disk `device` (a loop device whose partitions are `DEVp1`..`DEVp3`),
    /// whose root partition is mounted on `root`. `sourceDateEpoch` dates the ESP's folders and
    /// file (mtools reads SOURCE_DATE_EPOCH; otherwise it stamps them with the current time).
    public static func install(device: String, root: String, rootUUID: String, kernel: String, initrd: String?,
                               sourceDateEpoch: Int?, scratch: String) throws {
        let fm = FileManager.default
        let grubDir = try RootedPath.resolve("/boot/grub", in: root)
        try fm.createDirectory(atPath: grubDir, withIntermediateDirectories: true)
        try Data(config(rootUUID: rootUUID, kernel: kernel, initrd: initrd).utf8).write(to: URL(fileURLWithPath: "\(grubDir)/grub.cfg"))
        for target in ["i386-pc", "x86_64-efi"] where !fm.fileExists(atPath: "/usr/lib/grub/\(target)/modinfo.sh") {
            throw BuildError.invalid("vm-boot=firmware: the build host has no GRUB for \(target) in /usr/lib/grub (scripts/install-deps.sh installs grub-pc-bin and grub-efi-amd64-bin)")
        }
        try Command.check("installing GRUB for BIOS", [
            "grub-install", "--target=i386-pc", "--boot-directory=\(try RootedPath.resolve("/boot", in: root))",
            "--modules=part_gpt ext2", "--locales=", "--fonts=", "--themes=", "--no-floppy", device,
        ])
        let work = "\(scratch)/efi-\(getpid())"
        try fm.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: work) }
        let early = "search --no-floppy --fs-uuid --set=root \(rootUUID)\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n"
        try Data(early.utf8).write(to: URL(fileURLWithPath: "\(work)/early.cfg"))
        try Command.check("making GRUB for UEFI", [
            "grub-mkimage", "-O", "x86_64-efi", "-d", "/usr/lib/grub/x86_64-efi", "-p", "/boot/grub",
            "-c", "\(work)/early.cfg", "-o", "\(work)/BOOTX64.EFI",
        ] + efiModules)
        let esp = "\(device)p2"
        var env = ["MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        env["SOURCE_DATE_EPOCH"] = sourceDateEpoch.map(String.init)
        try Command.check("writing the EFI system partition", ["mmd", "-i", esp, "::/EFI", "::/EFI/BOOT"], environment: env)
        try Command.check("writing the EFI system partition", ["mcopy", "-i", esp, "\(work)/BOOTX64.EFI", "::/EFI/BOOT/BOOTX64.EFI"], environment: env)
    }
}
