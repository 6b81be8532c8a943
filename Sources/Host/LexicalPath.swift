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
}
