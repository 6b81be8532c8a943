import Foundation
import Host

/// The scratch folders of VM passes, `CACHE/tmp/vm-PID/`, each with `vm-PID.lock`, which its pass
/// holds exclusively while it runs. A build killed with SIGKILL leaves its folder with whatever
/// was up: the step's mount, the loop device, the qemu-storage-daemon exporting the overlay
/// through FUSE. The next VM pass releases those and removes the folder.
enum ScratchFolders {
    /// Releases and removes every scratch folder whose lock is free (its build is dead); returns
    /// their names.
    static func sweep(_ tmp: String) -> [String] {
        let names = (try? FileSystem.children(tmp)) ?? []
        var swept: [String] = []
        for name in names where name.hasPrefix("vm-") && !name.hasSuffix(".lock") {
            let folder = "\(tmp)/\(name)"
            guard let lock = FileLock(trying: folder + ".lock", mode: .exclusive) else { continue }
            release(folder)
            try? FileSystem.removeTree(folder)
            unlink(lock.path)
            lock.unlock()
            swept.append(name)
        }
        for name in names where name.hasPrefix("vm-") && name.hasSuffix(".lock") && !names.contains(String(name.dropLast(5))) {
            if let lock = FileLock(trying: "\(tmp)/\(name)", mode: .exclusive) { unlink(lock.path) }
        }
        return swept
    }

    /// What a dead pass left up in `folder`, in the order a live one releases it: the step's
    /// mount, then for each export the loop device, the daemon and the FUSE mount.
    static func release(_ folder: String) {
        let exports = ((try? FileSystem.children(folder)) ?? []).filter { $0.hasSuffix(".export") }.map { "\(folder)/\($0)" }
        for mp in Mounts.mountpoints(under: folder) where !exports.contains(mp) { MountedDisk.unmount(mp) }
        for export in exports {
            MountedDisk.detachLoops(of: export)
            MountedDisk.stopDaemon(pidFile: String(export.dropLast(".export".count)) + ".pid")
            if Mounts.isMounted(export) { MountedDisk.unmount(export) }
        }
    }
}
