import Foundation

/// The build context's ignore file (`.containerignore`, else `.dockerignore`): patterns of paths
/// that COPY and ADD never see, with `*`, `?`, `[...]`, `**` for any number of folders, and `!` to
/// take a path back. The last matching pattern decides. A folder that is ignored hides everything
/// below it unless a later `!` pattern names something inside.
public struct ContextIgnore: Equatable, Sendable {
    struct Pattern: Equatable, Sendable {
        var components: [String]
        var exclude: Bool
    }

    var patterns: [Pattern]
    /// The file the patterns came from, if any.
    public var file: String?

    public init(patterns lines: [String], file: String? = nil) {
        self.file = file
        patterns = lines.compactMap { raw in
            var l = raw.trimmingCharacters(in: .whitespaces)
            if l.isEmpty || l.hasPrefix("#") { return nil }
            var exclude = false
            if l.hasPrefix("!") { exclude = true; l = String(l.dropFirst()).trimmingCharacters(in: .whitespaces) }
            let comps = l.split(separator: "/").map(String.init).filter { $0 != "." && !$0.isEmpty }
            return comps.isEmpty ? nil : Pattern(components: comps, exclude: exclude)
        }
    }

    /// Reads the context's ignore file; no file means nothing is ignored.
    public static func load(context: String) throws -> ContextIgnore {
        for name in [".containerignore", ".dockerignore"] {
            let path = (context as NSString).appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: path) {
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    throw RecipeError(SourceLocation(file: path, line: 0, column: 0), "cannot read the ignore file")
                }
                return ContextIgnore(patterns: text.components(separatedBy: .newlines), file: path)
            }
        }
        return ContextIgnore(patterns: [])
    }

    /// Whether a path relative to the context (no leading slash) is ignored.
    public func isIgnored(_ relativePath: String) -> Bool {
        let comps = relativePath.split(separator: "/").map(String.init)
        var ignored = false
        for p in patterns {
            // A pattern also matches everything under a folder it matches.
            let hit = (1...max(1, comps.count)).contains { n in ContextIgnore.match(p.components[...], comps[0..<min(n, comps.count)]) }
            if hit { ignored = !p.exclude }
        }
        return ignored
    }

    static func match(_ pattern: ArraySlice<String>, _ path: ArraySlice<String>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == "**" {
            let rest = pattern.dropFirst()
            for k in path.startIndex...path.endIndex where match(rest, path[k...]) { return true }
            return false
        }
        guard let head = path.first, fnmatch(first, head, 0) == 0 else { return false }
        return match(pattern.dropFirst(), path.dropFirst())
    }
}
