import Foundation

/// Paths resolved by their text alone (no file is looked at): `.` is dropped and `..` stops at
/// `/`. Inside an image root, as Containerfiles resolve WORKDIR, COPY destinations and context
/// sources; on the host, as a shell's `cd` makes a relative path absolute.
public enum LexicalPath {
    /// `path` resolved against the absolute folder `base` (an absolute `path` ignores `base`).
    public static func join(_ base: String, _ path: String) -> String {
        var parts: [Substring] = path.hasPrefix("/") ? [] : base.split(separator: "/")
        for p in path.split(separator: "/") {
            if p == "." { continue }
            if p == ".." { _ = parts.popLast(); continue }
            parts.append(p)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// A path of the host made absolute against the working folder (`..` drops the component
    /// before it); an empty path stays empty, for its user to refuse. A path handed to a program
    /// that runs elsewhere (a daemon that changes to `/`, runc in a bundle) or compared with the
    /// mount table must be absolute: a relative one names another file there, or none.
    public static func absolute(_ path: String) -> String {
        path.isEmpty ? path : join(FileManager.default.currentDirectoryPath, path)
    }

    /// Whether `path`, read from a folder `depth` levels below a root, stays inside that root:
    /// no `..` on the way climbs above it. An absolute path is read from the root itself
    /// (`/../x` leaves it, as `../x` does; `join` would clamp both to `/x`).
    public static func staysInside(_ path: String, depth: Int = 0) -> Bool {
        var level = path.hasPrefix("/") ? 0 : depth
        for c in path.split(separator: "/") where c != "." {
            level += c == ".." ? -1 : 1
            if level < 0 { return false }
        }
        return true
    }
}
