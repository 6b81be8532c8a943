import Foundation
import Host
import QcowIO
import RecipePlan

/// Where a step's work happens: a root folder on this host (the container's writable root, or a
/// VM disk mounted through a loop device), or a disk inside libguestfs's appliance. Steps are
/// written once against this.
public protocol Workspace {
    /// Runs a command with the step's environment, working directory, user, network and mounts.
    func run(_ argv: [String], environment: [KeyValue], workdir: String, user: String?, network: Sandbox.Network,
             mounts: StepMounts, onOutput: @escaping @Sendable (String) -> Void) throws -> Command.Result
    /// COPY/ADD from the build context.
    func copy(_ copy: ContextCopy, sources: [String], destination: String, chown: String?, chmod: String?, add: Bool) throws
    func writeFile(_ path: String, _ content: String) throws
    func list(_ directory: String) throws -> [String]
    func fetch(_ path: String, to local: String) throws
}

/// What `RUN --mount=` has mounted while a step runs: host folders (cache mounts) and tmpfs.
public struct StepMounts: Sendable {
    public var binds: [Sandbox.Bind] = []
    public var tmpfs: [Sandbox.Tmpfs] = []

    public init() {}

    var isEmpty: Bool { binds.isEmpty && tmpfs.isEmpty }
}

/// A root folder on this host; commands run in the `Sandbox`.
public struct LocalRoot: Workspace {
    public let root: String

    public init(root: String) { self.root = root }

    public func run(_ argv: [String], environment: [KeyValue], workdir: String, user: String?, network: Sandbox.Network,
                    mounts: StepMounts, onOutput: @escaping @Sendable (String) -> Void) throws -> Command.Result {
        var sandbox = Sandbox(root: root, environment: environment, workdir: workdir, user: user)
        sandbox.network = network
        sandbox.binds = mounts.binds
        sandbox.tmpfs = mounts.tmpfs
        return try sandbox.run(argv, onOutput: onOutput)
    }

    public func copy(_ copy: ContextCopy, sources: [String], destination: String, chown: String?, chmod: String?, add: Bool) throws {
        try copy.apply(sources: sources, destination: destination, chown: chown, chmod: chmod, add: add, root: root)
    }

    // Paths in the root are resolved inside it (`RootedPath`): a symlink in the image, such as
    // `/etc/fstab -> /etc/x` or `/boot -> /`, leads to the root's files, never the host's.

    public func writeFile(_ path: String, _ content: String) throws {
        try Data(content.utf8).write(to: URL(fileURLWithPath: try RootedPath.resolve(path, in: root)))
    }

    public func list(_ directory: String) throws -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: try RootedPath.resolve(directory, in: root))) ?? []
    }

    public func fetch(_ path: String, to local: String) throws {
        try FileManager.default.copyItem(atPath: try RootedPath.resolve(path, in: root), toPath: local)
    }
}

/// A disk in libguestfs's appliance: commands run chrooted into it by the appliance's daemon;
/// COPY stages the files on this host and unpacks them with tar-in.
public struct GuestfsWorkspace: Workspace {
    public let disk: GuestfsDisk
    /// A folder on this host for staging.
    public let scratch: String

    /// The appliance is a VM: nothing a step does there reaches the host. Inside it, the step
    /// keeps only the default capabilities of a container (`RuntimeSpec.capabilities`, dropped
    /// from the bounding set with the image's `setpriv`, util-linux, when the image has it), so
    /// that it cannot mount or load modules in the appliance either.
    static let confine: [String] = {
        let caps = RuntimeSpec.capabilities.map { "+" + $0.dropFirst("CAP_".count).lowercased() }.joined(separator: ",")
        return ["/bin/sh", "-c", "if command -v setpriv >/dev/null 2>&1; then exec setpriv --bounding-set=-all,\(caps) -- \"$@\"; fi; exec \"$@\"",
                "imgbench-confine"]
    }()

    /// `network` none: the command runs in a network namespace of its own inside the appliance
    /// (the image's `unshare`, util-linux).
    public func run(_ argv: [String], environment: [KeyValue], workdir: String, user: String?, network: Sandbox.Network,
                    mounts: StepMounts, onOutput: @escaping @Sendable (String) -> Void) throws -> Command.Result {
        guard mounts.isEmpty else {
            throw BuildError.invalid("RUN --mount: the guestfs backend runs steps in libguestfs's appliance, where imgbench mounts nothing; build the VM side with --vm-backend loop")
        }
        var env = ["PATH=\(Sandbox.defaultPath)", "HOME=/root"].filter { e in !environment.contains { e.hasPrefix($0.key + "=") } }
        env += environment.map { "\($0.key)=\($0.value)" }
        let asUser = user.map { ["runuser", "-u", $0, "--"] } ?? []
        let isolated = network == .none ? ["unshare", "--net", "--"] : []
        let full = ["/usr/bin/env", "-i"] + env + isolated + GuestfsWorkspace.confine + asUser + ["/bin/sh", "-c", "mkdir -p \"$0\" && cd \"$0\" && exec \"$@\" 2>&1", workdir] + argv
        do {
            let out = try disk.run(full)
            onOutput(out)
            return Command.Result(status: 0, output: out, timedOut: false)
        } catch let HostError.commandFailed(_, _, _, tail) {
            onOutput(tail)
            return Command.Result(status: 1, output: tail, timedOut: false)
        }
    }

    public func copy(_ copy: ContextCopy, sources: [String], destination: String, chown: String?, chmod: String?, add: Bool) throws {
        let stage = "\(scratch)/stage-\(UUID().uuidString)"
        let accounts = "\(stage).accounts"
        defer {
            try? FileManager.default.removeItem(atPath: stage)
            try? FileManager.default.removeItem(atPath: accounts)
            unlink(stage + ".tar")
        }
        try FileManager.default.createDirectory(atPath: stage, withIntermediateDirectories: true)
        if chown != nil {
            try FileManager.default.createDirectory(atPath: "\(accounts)/etc", withIntermediateDirectories: true)
            for f in ["passwd", "group"] { try? disk.download("/etc/\(f)", to: "\(accounts)/etc/\(f)") }
        }
        try copy.apply(sources: sources, destination: destination, chown: chown, chmod: chmod, add: add, root: stage,
                       accounts: chown != nil ? accounts : nil)
        // Only what the copy wrote goes in: the destination, not the parents staged around it.
        let rel = String(LexicalPath.join("/", destination).dropFirst())
        var entries = [rel.isEmpty ? "." : rel]
        if !destination.hasSuffix("/"), !FileManager.default.fileExists(atPath: "\(stage)/\(rel)") {
            entries = (try FileManager.default.contentsOfDirectory(atPath: stage))
        }
        try Command.check("staging a COPY for the guestfs appliance",
                          ["tar", "-C", stage, "--numeric-owner", "--xattrs", "-cf", stage + ".tar"] + entries)
        try disk.tarIn(stage + ".tar", to: "/")
    }

    public func writeFile(_ path: String, _ content: String) throws { try disk.write(path, content) }
    public func list(_ directory: String) throws -> [String] { try disk.list(directory) }
    public func fetch(_ path: String, to local: String) throws { try disk.download(path, to: local) }
}
