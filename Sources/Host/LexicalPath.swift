/// Paths inside an image root, resolved by their text alone (no file is looked at): `.` is
/// dropped and `..` stops at `/`, as Containerfiles resolve WORKDIR, COPY destinations and
/// context sources.
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
