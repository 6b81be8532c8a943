import Foundation
import Host
import RecipePlan

/// Runs a build step's command in a root folder, isolated as a container runtime would: chroot
/// plus new mount, pid, uts and ipc namespaces, with /proc, a read-only /sys, a minimal /dev and
/// the host's resolv.conf mounted for the step. Host networking.
///
/// Every mount is made inside the step's own mount namespace, so all of them vanish with it, and
/// the pid namespace ends every process the step started (a daemon a package's postinst launched)
/// when the step's command exits: nothing is left mounted or running, whatever happens.
public struct Sandbox: Sendable {
    public var root: String
    public var environment: [KeyValue]
    public var workdir: String
    /// USER: a name or uid[:gid], resolved inside the root.
    public var user: String?
    public var hostname: String
    /// Host folders bind-mounted into the root for the command (host path, path inside), made in
    /// the root when missing. Build steps have none; measurements share a package cache this way.
    public var binds: [Bind] = []

    public struct Bind: Sendable {
        public var host: String
        public var inside: String
        public init(host: String, inside: String) {
            self.host = host
            self.inside = inside
        }
    }

    public init(root: String, environment: [KeyValue] = [], workdir: String = "/", user: String? = nil, hostname: String = "imgbench") {
        self.root = root
        self.environment = environment
        self.workdir = workdir
        self.user = user
        self.hostname = hostname
    }

    package static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// The environment the command starts with: PATH and HOME unless the recipe set them, then the
    /// recipe's ENV and ARG values.
    public var effectiveEnvironment: [String] {
        var env: [String] = []
        if !environment.contains(where: { $0.key == "PATH" }) { env.append("PATH=\(Sandbox.defaultPath)") }
        if !environment.contains(where: { $0.key == "HOME" }) { env.append("HOME=/root") }
        env += environment.map { "\($0.key)=\($0.value)" }
        return env
    }

    /// The mount-and-exec script run as pid 1 of the new namespaces; `$1` is the root, the rest
    /// is the command.
    static let script = #"""
        set -e
        R=$1; W=$2; H=$3; U=$4; B=$5; shift 5
        mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
        mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys" 2>/dev/null || true
        mount -t tmpfs -o mode=755,nosuid,size=65536k tmpfs "$R/dev"
        mknod -m 666 "$R/dev/null" c 1 3; mknod -m 666 "$R/dev/zero" c 1 5; mknod -m 666 "$R/dev/full" c 1 7
        mknod -m 666 "$R/dev/random" c 1 8; mknod -m 666 "$R/dev/urandom" c 1 9; mknod -m 666 "$R/dev/tty" c 5 0
        mkdir -p "$R/dev/pts" "$R/dev/shm"
        mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts" 2>/dev/null && ln -s pts/ptmx "$R/dev/ptmx"
        mount -t tmpfs -o nosuid,nodev,size=65536k tmpfs "$R/dev/shm"
        ln -s /proc/self/fd "$R/dev/fd"; ln -s fd/0 "$R/dev/stdin"; ln -s fd/1 "$R/dev/stdout"; ln -s fd/2 "$R/dev/stderr"
        if [ -e /etc/resolv.conf ]; then mount --bind -o ro "$(readlink -f /etc/resolv.conf)" "$R/etc/resolv.conf" 2>/dev/null || true; fi
        printf '%s' "$B" | while IFS= read -r src && IFS= read -r dst; do mkdir -p "$R$dst"; mount --bind "$src" "$R$dst"; done
        hostname "$H"
        if [ -n "$U" ]; then exec chroot --userspec="$U" "$R" /usr/bin/env -i "$@"; fi
        exec chroot "$R" /usr/bin/env -i "$@"
        """#

    /// Runs `argv` (already in its final form: shell form goes through the recipe's SHELL) in the
    /// root. Output streams to `onOutput`; the result keeps its tail.
    public func run(_ argv: [String], onOutput: (@Sendable (String) -> Void)? = nil) throws -> Command.Result {
        guard getuid() == 0 else { throw BuildError.needsRoot("running a step in namespaces") }
        let fm = FileManager.default
        // Mount points the root may lack (FROM scratch); made for the step and removed after,
        // so that they are not captured.
        var made: [String] = []
        for dir in ["proc", "sys", "dev", "etc"] where !fm.fileExists(atPath: "\(root)/\(dir)") {
            try fm.createDirectory(atPath: "\(root)/\(dir)", withIntermediateDirectories: false)
            made.append("\(root)/\(dir)")
        }
        var madeResolv = false
        if !fm.fileExists(atPath: "\(root)/etc/resolv.conf") && !isSymlink("\(root)/etc/resolv.conf") {
            madeResolv = fm.createFile(atPath: "\(root)/etc/resolv.conf", contents: nil)
        }
        defer {
            if madeResolv { try? fm.removeItem(atPath: "\(root)/etc/resolv.conf") }
            for d in made.reversed() { rmdir(d) }
        }
        // The working directory is made if missing, as WORKDIR does.
        let cwd = workdir.isEmpty ? "/" : workdir
        let shellCd = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", cwd]
        // --kill-child: the namespace's init, and so every process of the step, is killed when
        // unshare is (unshare itself ignores SIGINT and SIGTERM while it waits).
        let command = ["unshare", "--mount", "--pid", "--uts", "--ipc", "--fork", "--kill-child", "--propagation", "private",
                       "/bin/sh", "-c", Sandbox.script, "imgbench-sandbox", root, cwd, hostname, user ?? "",
                       binds.map { "\($0.host)\n\($0.inside)\n" }.joined()]
            + effectiveEnvironment + (fm.fileExists(atPath: "\(root)/bin/sh") ? shellCd : []) + argv
        try ensureWorkdir(cwd)
        return try Command.run(command, environment: ["PATH": Sandbox.defaultPath], onOutput: onOutput)
    }

    func ensureWorkdir(_ dir: String) throws {
        guard dir != "/" else { return }
        let path = root + dir
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
    }

    func isSymlink(_ path: String) -> Bool {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) != nil
    }
}
