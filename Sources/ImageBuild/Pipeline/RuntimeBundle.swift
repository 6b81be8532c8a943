import Foundation
import OCI
import QcowIO
import RecipePlan

/// An OCI runtime bundle (`config.json` and `rootfs/`) that `runc run` starts: the image's
/// layers applied in order into `rootfs` (by `BundleStager`, during the build), and a runtime
/// config from the image config.
///
/// Left out on purpose: `linux.resources` (cgroup limits) and `process.rlimits`, which the hosts
/// this project runs on refuse (their hybrid cgroup layout); the network namespace, so the
/// container has the host's network as the build steps do.
public enum RuntimeBundle {
    /// `config.json` for a bundle whose root is in place: `rootfs` in the bundle, or `root` (an
    /// absolute path, such as a storage driver's mounted writable root). The image's user is
    /// looked up in the root.
    package static func writeConfig(at path: String, root: String? = nil, config: ContainerConfig, hostname: String) throws {
        let rootfs = root ?? "\(path)/rootfs"
        let owner = config.user.flatMap { ContextCopy.owner($0, root: rootfs) } ?? (0, 0)
        let args = (config.entrypoint ?? []) + (config.cmd ?? [])
        let caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
                    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
        let spec: [String: Any] = [
            "ociVersion": "1.0.2",
            "process": [
                "terminal": false,
                "user": ["uid": owner.0, "gid": owner.1],
                "args": args.isEmpty ? ["/bin/sh"] : args,
                "env": config.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": config.workingDir ?? "/",
                "capabilities": ["bounding": caps, "effective": caps, "permitted": caps],
                "noNewPrivileges": true,
            ] as [String: Any],
            "root": ["path": root ?? "rootfs", "readonly": false],
            "hostname": hostname,
            "mounts": [
                ["destination": "/proc", "type": "proc", "source": "proc"],
                ["destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]],
                ["destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]],
                ["destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]],
                ["destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]],
                ["destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]],
            ],
            "annotations": [
                "org.opencontainers.image.ref.name": hostname,
                "dev.imgbench.left-out": "linux.resources and process.rlimits (refused by this host's cgroup layout); network namespace (host networking)",
            ],
            "linux": [
                "namespaces": [["type": "pid"], ["type": "ipc"], ["type": "uts"], ["type": "mount"]],
                "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
                "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            ] as [String: Any],
        ]
        let data = try JSONSerialization.data(withJSONObject: spec, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try data.write(to: URL(fileURLWithPath: "\(path)/config.json"))
    }
}
