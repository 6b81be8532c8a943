import Foundation

/// Paths inside a root folder (an image's root, a mounted VM disk, a build context) resolved
/// against the files themselves, never leaving the root: every symlink met on the way is followed
/// as if the root were `/` (an absolute target starts again at the root, `..` stops at it), as
/// the kernel's `openat2(RESOLVE_IN_ROOT)` and the `securejoin` of runc, buildah and umoci do.
///
/// A build never writes or reads through a path made by pasting a path from a recipe or an
/// image onto a root: a symlink such as `app -> /tmp/x` in an image would take the write to the
/// host. It resolves the path here first, and the result is a path on this host inside the root
/// whose existing components are no symlinks (the last one is one only when `followLast` is
/// false). Components that do not exist yet are kept as named, for the caller to make.
///
/// Nothing else runs in the root while a build resolves and writes (steps run one at a time),
/// so the resolution is not raced by the recipe.
public enum RootedPath {
    /// More symlinks than this on one path is a loop (Linux's own limit is 40).
    static let maxLinks = 255

    /// `path` (absolute or relative, as seen from inside `root`) as a path on this host inside
    /// `root`. `followLast`: whether a symlink in the last component is followed too.
    public static func resolve(_ path: String, in root: String, followLast: Bool = true) throws -> String {
        let base = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        var done: [String] = []
        var todo = path.split(separator: "/").map(String.init)
        var links = 0
        while !todo.isEmpty {
            let c = todo.removeFirst()
            if c.isEmpty || c == "." { continue }
            if c == ".." {
                _ = done.popLast()
                continue
            }
            let candidate = join(base, done + [c])
            var st = stat()
            guard lstat(candidate, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK, followLast || !todo.isEmpty else {
                done.append(c)
                continue
            }
            links += 1
            guard links <= maxLinks else {
                throw HostError.io(path: candidate, message: "too many levels of symbolic links resolving \(path) inside \(base)")
            }
            let target = try FileSystem.readlink(candidate)
            if target.hasPrefix("/") { done = [] }
            todo = target.split(separator: "/").map(String.init) + todo
        }
        return join(base, done)
    }

    /// The folder `path` inside `root`, resolved as `resolve` does, with the folders missing on
    /// the way made (0755): the resolved path, and the folders made, outermost first. An
    /// existing component that is not a folder is an error naming `path`.
    public static func makeFolders(_ path: String, in root: String) throws -> (path: String, made: [String]) {
        let base = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        let resolved = try resolve(path, in: base)
        var made: [String] = []
        var p = base == "/" ? "" : base
        for c in resolved.dropFirst(base.count).split(separator: "/") {
            p += "/\(c)"
            if let st = try FileSystem.lstatIfExists(p) {
                // Resolved: an existing component is no symlink.
                guard st.isDirectory else { throw HostError.io(path: p, message: "\(path) in the image is not a folder") }
                continue
            }
            guard mkdir(p, 0o755) == 0 || errno == EEXIST else { throw HostError.systemCall(path: p, operation: "mkdir", errno: errno) }
            made.append(p)
        }
        return (resolved, made)
    }

    /// Whether the host path `path` names `root` or something below it, by text (both absolute
    /// and without `..`).
    public static func isWithin(_ path: String, _ root: String) -> Bool {
        let r = root.hasSuffix("/") ? String(root.dropLast()) : root
        return path == r || path.hasPrefix(r + "/") || r.isEmpty
    }

    /// The real path of an existing file on this host: every symlink resolved, as realpath(3).
    public static func real(_ path: String) throws -> String {
        guard let p = realpath(path, nil) else {
            throw HostError.io(path: path, message: String(cString: strerror(errno)))
        }
        defer { free(p) }
        return String(cString: p)
    }

    static func join(_ root: String, _ parts: [String]) -> String {
        parts.isEmpty ? root : (root == "/" ? "" : root) + "/" + parts.joined(separator: "/")
    }
}
