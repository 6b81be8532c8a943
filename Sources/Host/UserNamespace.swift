import Foundation

/// Rootless operation: a build run by a user who is not root re-enters itself in a user
/// namespace of its own, where it is root over the user's subordinate ids (/etc/subuid and
/// /etc/subgid, as rootless podman and buildah use), together with a mount namespace, so that
/// its mounts vanish with it.
public enum UserNamespace {
    /// The environment variable the re-entered process finds set.
    public static let marker = "IMGBENCH_ROOTLESS"

    /// This process's uid map (a process enters a namespace only by re-executing itself, so it
    /// is read once).
    private static let uidMap = (try? String(contentsOfFile: "/proc/self/uid_map", encoding: .utf8)) ?? ""

    /// Whether this process runs in a user namespace other than the host's.
    public static let isNested: Bool = {
        let fields = uidMap.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        return !fields.isEmpty && fields != ["0", "0", "4294967295"]
    }()

    /// The uid on the host that this process's root (or uid) stands for.
    public static var hostUID: UInt32 {
        guard isNested else { return getuid() }
        for line in uidMap.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if f.count == 3, f[0] == "0", let outside = UInt32(f[1]) { return outside }
        }
        return getuid()
    }

    /// The user's ranges of subordinate ids, or an error that says how to get them.
    public static func checkSubordinateIDs() throws {
        let name = String(cString: getpwuid(getuid())?.pointee.pw_name ?? strdup("\(getuid())"))
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            let has = text.split(separator: "\n").contains { line in
                let owner = line.split(separator: ":").first.map(String.init)
                return owner == name || owner == "\(getuid())"
            }
            guard has else {
                throw HostError.io(path: file, message: "no range of subordinate ids for \(name): a rootless build maps the image's users onto them "
                    + "(as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 \(name))")
            }
        }
        guard Command.exists("newuidmap"), Command.exists("newgidmap") else { throw HostError.missingTool("newuidmap", package: "uidmap") }
    }

    /// Re-executes this program with `arguments` in a new user namespace (root mapped to the
    /// caller, the image's other ids to the caller's subordinate ids) and a new mount namespace.
    /// `environment` is added to this process's.
    public static func reenter(_ arguments: [String], environment: [String: String] = [:]) throws -> Never {
        try checkSubordinateIDs()
        // This program's own path: /proc/self/exe would be unshare's once it runs.
        let me = try FileSystem.readlink("/proc/self/exe")
        try Command.exec(["unshare", "--user", "--map-root-user", "--map-users=auto", "--map-groups=auto",
                          "--mount", "--propagation", "private", "--", me] + arguments,
                         environment: environment.merging([marker: "1"]) { a, _ in a })
    }
}
