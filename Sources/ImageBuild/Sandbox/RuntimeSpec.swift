import Foundation
import Host

/// The OCI runtime configuration that runc starts a build step and the built image's bundle
/// with: what docker, podman and buildah give a container by default.
///
/// - The capability set of the OCI runtime spec's default (docker's): no CAP_SYS_ADMIN,
///   CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_PTRACE, CAP_NET_ADMIN, ... CAP_MKNOD is kept (a
///   package may make a node), but the device cgroup lets the container open only the default
///   nodes (null, zero, full, random, urandom, tty, ptmx), so a node it makes, or one a base
///   image's layer holds, cannot reach a host device.
/// - `/proc` and `/sys` with docker's masked and read-only paths; `/sys` read-only; a fresh
///   `/dev` tmpfs with only the default nodes; new mount, pid, ipc and uts namespaces (and a
///   network namespace with only a loopback for `--network none`).
/// - A seccomp profile that refuses, with EPERM, the system calls docker's default profile
///   refuses to a container without CAP_SYS_ADMIN (mount, the new mount API, pivot_root, unshare
///   and clone with namespace flags, setns, module loading, kexec, reboot, swap, the clock,
///   keyrings, bpf, perf_event_open, open_by_handle_at, userfaultfd, ...); clone3 answers ENOSYS,
///   as in docker's, so that the C library falls back to clone, whose flags can be checked.
///   Docker's profile is an allow-list; this one denies the same dangerous calls and lets new
///   harmless ones through.
enum RuntimeSpec {
    /// The OCI spec's default capabilities (docker's `DefaultCapabilities`).
    static let capabilities = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]

    /// docker's masked paths (moby oci/defaults.go).
    static let maskedPaths = ["/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                              "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                              "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
    static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

    /// What a container may not call (see the type's comment).
    static let deniedSyscalls = [
        "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
        "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "init_module", "ioperm", "iopl", "kcmp",
        "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
        "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
        "query_module", "quotactl", "reboot", "request_key", "setns", "settimeofday", "swapoff", "swapon", "syslog",
        "sysfs", "_sysctl", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
    ]
    /// clone flags that make a namespace: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
    static let namespaceFlags: [UInt64] = [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000]

    static var seccomp: [String: Any] {
        let eperm = 1, enosys = 38
        var rules: [[String: Any]] = [
            ["names": deniedSyscalls, "action": "SCMP_ACT_ERRNO", "errnoRet": eperm],
            ["names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": enosys],
        ]
        // One rule per flag: a rule's conditions all hold together, rules are alternatives.
        for flag in namespaceFlags {
            rules.append(["names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": eperm,
                          "args": [["index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"]]])
        }
        return ["defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": rules]
    }

    /// The mounts every container gets, before the caller's own. In a rootless build the
    /// container shares the host's network namespace, which its user namespace does not own, so
    /// sysfs cannot be mounted afresh: the host's /sys is bound read-only instead (as rootless
    /// podman does with host networking).
    static func mounts(rootless: Bool) -> [[String: Any]] { [
        ["destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]],
        ["destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]],
        ["destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]],
        ["destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]],
        ["destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]],
        rootless
            ? ["destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]]
            : ["destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]],
    ] }

    /// A whole runtime config. `root`: the root folder (absolute, or relative to the bundle);
    /// `extraMounts` come after the default ones; `isolatedNetwork`: a network namespace of its
    /// own (loopback only) instead of the host's network.
    static func config(args: [String], env: [String], cwd: String, uid: UInt32, gid: UInt32, root: String,
                       hostname: String, noNewPrivileges: Bool, extraMounts: [[String: Any]] = [],
                       isolatedNetwork: Bool = false, annotations: [String: String] = [:]) -> [String: Any] {
        var namespaces: [[String: Any]] = [["type": "pid"], ["type": "ipc"], ["type": "uts"], ["type": "mount"]]
        if isolatedNetwork { namespaces.append(["type": "network"]) }
        return [
            "ociVersion": "1.0.2",
            "process": [
                "terminal": false,
                "user": ["uid": uid, "gid": gid],
                "args": args,
                "env": env,
                "cwd": cwd,
                "capabilities": ["bounding": capabilities, "effective": capabilities, "permitted": capabilities],
                "noNewPrivileges": noNewPrivileges,
            ] as [String: Any],
            "root": ["path": root, "readonly": false],
            "hostname": hostname,
            "mounts": mounts(rootless: UserNamespace.isNested) + extraMounts,
            "annotations": annotations,
            "linux": [
                "namespaces": namespaces,
                // Deny every device; runc adds the default nodes' rules after these.
                "resources": ["devices": [["allow": false, "access": "rwm"]]],
                "maskedPaths": maskedPaths,
                "readonlyPaths": readonlyPaths,
                "seccomp": seccomp,
            ] as [String: Any],
        ]
    }

    static func write(_ config: [String: Any], to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try data.write(to: URL(fileURLWithPath: path))
    }
}
