import Foundation
import OCI
import QcowIO
import RecipePlan

/// An OCI runtime bundle (`config.json` and `rootfs/`) that `runc run` starts: the image's
/// layers applied in order into `rootfs` (by `BundleStager`, during the build), and a runtime
/// config from the image config.
///
/// The configuration is a build step's (`RuntimeSpec`: docker's defaults). Left out on purpose:
/// `linux.resources` other than the device cgroup (cgroup limits) and `process.rlimits`, which the hosts
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
        let leftOut = "linux.resources except the device cgroup, and process.rlimits (refused by this host's cgroup layout); network namespace (host networking)"
        let spec = RuntimeSpec.config(
            args: args.isEmpty ? ["/bin/sh"] : args,
            env: config.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            cwd: config.workingDir ?? "/", uid: owner.0, gid: owner.1, root: root ?? "rootfs", hostname: hostname,
            noNewPrivileges: true,
            annotations: ["org.opencontainers.image.ref.name": hostname, "dev.imgbench.left-out": leftOut])
        try RuntimeSpec.write(spec, to: "\(path)/config.json")
    }
}
