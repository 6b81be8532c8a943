import Foundation
import Host
import RecipePlan

/// Runs a build step's command in a root folder as a container: through runc, as buildah does,
/// with the configuration docker gives a container by default (`RuntimeSpec`: pivot_root into
/// the root, the default capabilities, a seccomp profile, masked /proc paths, a read-only /sys,
/// only the default device nodes and the device cgroup), the host's resolv.conf mounted
/// read-only, and the host's network unless `network` is `.none`.
///
/// Every mount is made inside the container's own mount namespace, so all of them vanish with
/// it, and its pid namespace ends every process the step started (a daemon a package's postinst
/// launched) when the step's command exits: nothing is left mounted or running, whatever happens.
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
    /// The host's network (the default, so that apt works), or a namespace of its own with only
    /// a loopback (`--network none`, `RUN --network=none`).
    public var network: Network = .host

    public enum Network: String, CaseIterable, Sendable, Codable {
        case host
        case none
    }

    /// Empty memory mounted in the root for the command (`RUN --mount=type=tmpfs`).
    public var tmpfs: [Tmpfs] = []

    public struct Bind: Sendable {
        public var host: String
        public var inside: String
        public var readOnly: Bool
        /// A file (a secret) rather than a folder: its mount point is an empty file.
        public var isFile: Bool
        public init(host: String, inside: String, readOnly: Bool = false, isFile: Bool = false) {
            self.host = host
            self.inside = inside
            self.readOnly = readOnly
            self.isFile = isFile
        }
    }

    public struct Tmpfs: Sendable {
        public var inside: String
        /// Bytes (nil: the kernel's default, half the memory).
        public var size: UInt64?
        public init(inside: String, size: UInt64?) {
            self.inside = inside
            self.size = size
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

    /// Where runc keeps the state of the steps it runs: root's run folder, or in a rootless
    /// build one in the temporary folder named after the user.
    static var stateRoot: String {
        UserNamespace.isNested ? "\(NSTemporaryDirectory())/imgbench-runc-\(UserNamespace.hostUID)" : "/run/imgbench/runc"
    }
    nonisolated(unsafe) private static var counter = 0
    private static let counterLock = NSLock()

    /// Runs `argv` (already in its final form: shell form goes through the recipe's SHELL) in the
    /// root, through runc (see `RuntimeSpec`). Output streams to `onOutput`; the result keeps its
    /// tail. The container is deleted however the step ends, Ctrl-C included.
    public func run(_ argv: [String], onOutput: (@Sendable (String) -> Void)? = nil) throws -> Command.Result {
        guard getuid() == 0 else { throw BuildError.needsRoot("running a step in its sandbox (runc); imgbench build --rootless runs it in a user namespace") }
        let cwd = workdir.isEmpty ? "/" : LexicalPath.join("/", workdir)
        let owner = try resolveUser()
        var made = MountPoints(root: root)
        defer { made.remove() }
        try made.directories(["proc", "sys", "dev"])
        let mounts = try extraMounts(&made)
        try ensureWorkdir(cwd)
        let bundle = try TemporaryFolder.make(prefix: "imgbench-step")
        defer { try? FileManager.default.removeItem(atPath: bundle) }
        let id = Sandbox.nextID()
        try RuntimeSpec.write(RuntimeSpec.config(
            args: argv, env: effectiveEnvironment, cwd: cwd, uid: owner.0, gid: owner.1, root: root, hostname: hostname,
            noNewPrivileges: owner.0 == 0, extraMounts: mounts, isolatedNetwork: network == .none,
            annotations: ["dev.imgbench.sandbox": "a build step"]), to: "\(bundle)/config.json")
        let runc = ["runc", "--root", Sandbox.stateRoot]
        let stop = Cleanup.register("stop the step's container \(id)") {
            _ = try? Command.run(runc + ["delete", "--force", id], timeout: 30)
        }
        defer {
            Cleanup.unregister(stop)
            // `runc run` deletes the container when it ends; one it left (a failed start) goes.
            if FileSystem.exists("\(Sandbox.stateRoot)/\(id)") { _ = try? Command.run(runc + ["delete", "--force", id], timeout: 30) }
        }
        return try Command.run(runc + ["run", "--bundle", bundle, id], environment: ["PATH": Sandbox.defaultPath], onOutput: onOutput)
    }

    /// The mounts beyond the container's own: the host's resolv.conf, the binds and the tmpfs,
    /// each on a mount point made in the root when missing (and removed after the step).
    func extraMounts(_ made: inout MountPoints) throws -> [[String: Any]] {
        var mounts: [[String: Any]] = []
        if let resolv = try made.resolvConf() {
            mounts.append(["destination": "/etc/resolv.conf", "type": "bind", "source": resolv, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]])
        }
        for b in binds {
            // Under /dev runc makes the mount point in the container's own /dev (a tmpfs): nothing
            // is made in the root.
            if !(b.isFile && b.inside.hasPrefix("/dev/")) { try b.isFile ? made.file(b.inside) : made.directory(b.inside) }
            mounts.append(["destination": b.inside, "type": "bind", "source": b.host, "options": ["rbind", b.readOnly ? "ro" : "rw", "nosuid", "nodev"]])
        }
        for t in tmpfs {
            try made.directory(t.inside)
            mounts.append(["destination": t.inside, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"] + (t.size.map { ["size=\($0)"] } ?? [])])
        }
        return mounts
    }

    /// USER as uid and gid, looked up in the root (numbers need no entry).
    func resolveUser() throws -> (UInt32, UInt32) {
        guard let user, !user.isEmpty else { return (0, 0) }
        guard let o = ContextCopy.owner(user, root: root) else {
            throw BuildError.invalid("USER \(user): no such user or group in the image's /etc/passwd or /etc/group")
        }
        return o
    }

    /// A container name no other step of this or another build uses.
    static func nextID() -> String {
        let n = counterLock.withLock { counter += 1; return counter }
        return "imgbench-step-\(getpid())-\(n)-\(UInt32.random(in: 0...UInt32.max))"
    }

    /// The working directory, made if missing as WORKDIR does, inside the root whatever its
    /// symlinks say.
    func ensureWorkdir(_ dir: String) throws {
        _ = try RootedPath.makeFolders(dir, in: root)
    }
}

/// The mount points a step's container needs that its root lacks (a `FROM scratch` root has no
/// /proc): made for the step, inside the root, and removed after it, so that they are not
/// captured into its layer.
struct MountPoints {
    let root: String
    private var made: [(path: String, isDirectory: Bool)] = []

    init(root: String) { self.root = root }

    /// Makes the folder (and its missing parents) at the in-root path.
    mutating func directory(_ inside: String) throws {
        made += try RootedPath.makeFolders(inside, in: root).made.map { ($0, true) }
    }

    /// Makes an empty file (and its missing folders) at the in-root path, unless one is there.
    mutating func file(_ inside: String) throws {
        try directory((inside as NSString).deletingLastPathComponent)
        let path = try RootedPath.resolve(inside, in: root, followLast: false)
        guard try FileSystem.lstatIfExists(path) == nil else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o400)
        guard fd >= 0 else { throw HostError.systemCall(path: path, operation: "create", errno: errno) }
        close(fd)
        made.append((path, false))
    }

    mutating func directories(_ names: [String]) throws {
        for n in names { try directory("/" + n) }
    }

    /// The host's resolv.conf to mount on the root's /etc/resolv.conf, whose file is made when
    /// missing; nil when the host has none, or the root's is a link to nowhere (mounting on it
    /// would leave the link's target behind in the layer).
    mutating func resolvConf() throws -> String? {
        guard let host = try? RootedPath.real("/etc/resolv.conf") else { return nil }
        try directory("/etc")
        let inRoot = "\(root)/etc/resolv.conf"
        if let st = try FileSystem.lstatIfExists(inRoot) {
            if st.isSymlink { return FileSystem.exists(try RootedPath.resolve("/etc/resolv.conf", in: root)) ? host : nil }
            return host
        }
        let fd = open(inRoot, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw HostError.systemCall(path: inRoot, operation: "create", errno: errno) }
        close(fd)
        made.append((inRoot, false))
        return host
    }

    /// Removes what was made, deepest first.
    mutating func remove() {
        for m in made.reversed() {
            if m.isDirectory { rmdir(m.path) } else { unlink(m.path) }
        }
        made = []
    }
}
