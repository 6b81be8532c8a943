import Foundation
import Host
import QcowIO

/// A qcow2 image mounted read-write without booting a VM: qemu-storage-daemon exports it through
/// FUSE as a raw file, the raw file is loop-mounted, and the filesystem is mounted on a folder.
/// Writes go through QEMU's own qcow2 driver: real block-level copy-on-write into the image.
///
/// Each resource is registered with `Cleanup` as it is made, so that it is released on success
/// (`release()`), on failure, and on Ctrl-C: unmount, then the loop device, then the daemon
/// (which flushes the image when it stops).
public final class MountedDisk: @unchecked Sendable {
    public let image: String
    public let mountpoint: String
    let exportFile: String
    let pidFile: String
    private var tokens: [Int] = []
    /// With `.wholeDisk`: the loop device of the whole disk, its partitions added (`DEVpN`).
    public private(set) var device: String?

    /// What of the image is mounted.
    public enum Target: Sendable {
        /// The filesystem at byte 0 (a filesystem-only disk).
        case filesystem
        /// The filesystem of one partition, through a loop device over its byte range.
        case partition(DiskLayout.Partition)
        /// A loop device of the whole disk with its partitions (`partx -a`, as the host kernel
        /// may not parse GPT itself), partition `root` mounted: for tools such as grub-install
        /// that need the disk and its partitions as block devices.
        case wholeDisk(root: Int)
    }

    /// Mounts `image` on `mountpoint` (made if missing); `workdir` holds the export file. With
    /// `raw`, the image is a raw disk image, loop-mounted as it is (no qemu-storage-daemon).
    /// `options` are mount options besides `loop` (a build's `buildOptions`).
    public init(image: String, mountpoint: String, workdir: String, filesystem: String = "ext4", raw: Bool = false,
                options: [String] = [], target: Target = .filesystem) throws {
        guard getuid() == 0 else { throw BuildError.needsRoot("mounting a qcow2 disk through a loop device") }
        // Absolute: the daemon changes to / before it serves the export (and releases it from
        // there), and the mount table that tells what is still mounted holds absolute paths.
        let image = LexicalPath.absolute(image), mountpoint = LexicalPath.absolute(mountpoint)
        let workdir = LexicalPath.absolute(workdir)
        self.image = image
        self.mountpoint = mountpoint
        let fm = FileManager.default
        try fm.createDirectory(atPath: workdir, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        let base = "\(workdir)/\((image as NSString).lastPathComponent)"
        exportFile = raw ? image : base + ".export"
        pidFile = base + ".pid"
        do {
            if raw {
                let file = image
                tokens.append(Cleanup.register("detach the loop device of \(image)") { MountedDisk.detachLoops(of: file) })
            } else {
                try startExport()
            }
            let mp = mountpoint
            switch target {
            case .filesystem:
                try Command.check("mounting \(image)", ["mount", "-t", filesystem, "-o", (["loop"] + options).joined(separator: ","), exportFile, mountpoint])
            case let .partition(p):
                try Command.check("mounting \(image)'s partition at \(p.offset)", ["mount", "-t", filesystem, "-o",
                    (["loop", "offset=\(p.offset)", "sizelimit=\(p.size)"] + options).joined(separator: ","), exportFile, mountpoint])
            case let .wholeDisk(root):
                let file = exportFile
                // -P sets PARTSCAN, so that detaching the device also drops the partitions partx adds.
                let dev = try Command.check("attaching \(image) to a loop device", ["losetup", "-P", "-f", "--show", exportFile])
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                device = dev
                tokens.append(Cleanup.register("detach \(dev)") {
                    _ = try? Command.run(["partx", "-d", dev])
                    MountedDisk.detachLoops(of: file)
                })
                if !FileManager.default.fileExists(atPath: "\(dev)p\(root)") {
                    try Command.check("adding the partitions of \(dev)", ["partx", "-a", dev])
                }
                try Command.check("mounting \(image)'s partition \(root)", ["mount", "-t", filesystem, "-o", options.isEmpty ? "defaults" : options.joined(separator: ","), "\(dev)p\(root)", mountpoint])
            }
            tokens.append(Cleanup.register("unmount \(mp)") { MountedDisk.unmount(mp) })
        } catch {
            release()
            throw error
        }
    }

    /// How a build step mounts its disk. noatime: reading a file in a step does not rewrite its
    /// inode. noinit_itable (ext4): the kernel would otherwise zero the inode tables mkfs left
    /// uninitialised in the background while the step runs, and flag the groups as it goes.
    /// Either would make the same step write different blocks from one build to the next.
    public static func buildOptions(filesystem: String) -> [String] {
        filesystem == "ext4" ? ["noatime", "noinit_itable"] : ["noatime"]
    }

    func startExport() throws {
        FileManager.default.createFile(atPath: exportFile, contents: nil)
        try? FileManager.default.removeItem(atPath: pidFile)
        let export = exportFile, pid = pidFile
        // Registered before the daemon starts: a Ctrl-C in between still finds it by its pid file.
        tokens.append(Cleanup.register("stop qemu-storage-daemon for \(image)") {
            MountedDisk.detachLoops(of: export)
            MountedDisk.stopDaemon(pidFile: pid)
            if Mounts.isMounted(export) { _ = try? Command.run(["umount", "-l", export]) }
            unlink(export)
        })
        try Command.check("exporting \(image) through FUSE", [
            "qemu-storage-daemon",
            // discard=unmap: fstrim in the guest filesystem frees the overlay's clusters.
            "--blockdev", "driver=file,node-name=file0,filename=\(MountedDisk.escape(image)),aio=threads,discard=unmap",
            "--blockdev", "driver=qcow2,node-name=disk0,file=file0,discard=unmap",
            "--export", "type=fuse,id=exp0,node-name=disk0,mountpoint=\(MountedDisk.escape(exportFile)),writable=on",
            "--pidfile", pidFile, "--daemonize",
        ], timeout: 60, logFile: pidFile + ".log")
        unlink(pidFile + ".log")
    }

    /// QEMU's option syntax doubles commas in values.
    static func escape(_ s: String) -> String { s.replacingOccurrences(of: ",", with: ",,") }

    /// Releases everything, newest first. Safe to call more than once.
    public func release() {
        for t in tokens.reversed() { Cleanup.run(t) }
        tokens.removeAll()
    }

    deinit { release() }

    static func unmount(_ mountpoint: String) {
        for attempt in 0..<50 {
            let r = try? Command.run(["umount", mountpoint])
            if r?.status == 0 || !Mounts.isMounted(mountpoint) { return }
            usleep(attempt < 10 ? 50_000 : 200_000)
        }
        // Still busy: detach it lazily so that it cannot outlive the build.
        _ = try? Command.run(["umount", "-l", mountpoint])
    }

    static func detachLoops(of file: String) {
        guard let r = try? Command.run(["losetup", "-j", file]), r.status == 0 else { return }
        for line in r.output.split(separator: "\n") {
            if let dev = line.split(separator: ":").first { _ = try? Command.run(["losetup", "-d", String(dev)]) }
        }
    }

    static func stopDaemon(pidFile: String) {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else { return }
        kill(pid, SIGTERM)
        // The daemon flushes and closes the image before it exits.
        for _ in 0..<300 where running(pid) { usleep(10_000) }
        if running(pid) {
            kill(pid, SIGKILL)
            usleep(100_000)
        }
        unlink(pidFile)
    }

    /// Whether a process still runs. The daemon detached itself, so its parent is init, which
    /// may reap it only seconds after it exits: a zombie has finished (and closed the image).
    static func running(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[close...].dropFirst(2).first
        return state != "Z" && state != "X"
    }
}
