import Foundation
import Host

/// COPY and ADD from the build context, as Containerfiles define them: sources relative to the
/// context (globs allowed, never outside it, the ignore file applied). What the plan needs (the
/// files a step reads, for its key) is here; copying them into a root is the build's
/// (`ContextCopy.apply` in ImageBuild).
public struct ContextCopy: Sendable {
    public var context: String
    public var ignore: ContextIgnore
    public var location: SourceLocation

    public init(context: String, ignore: ContextIgnore, location: SourceLocation) {
        self.context = context
        self.ignore = ignore
        self.location = location
    }

    /// The context files a COPY/ADD reads, relative to the context, sorted: what its cache key hashes.
    public func expand(_ sources: [String]) throws -> [String] {
        var out: [String] = []
        for s in sources {
            // Read lexically, as Docker does ("forbidden path outside the build context"):
            // `../x`, `/../x` and `a/../../x` leave it; `join` alone would clamp them to `x`.
            guard LexicalPath.staysInside(s) else {
                throw RecipeError(location, "source '\(s)' is outside the build context (it climbs above it with ..)")
            }
            let clean = LexicalPath.join("/", s).dropFirst()
            let matches = try glob(String(clean))
            if matches.isEmpty {
                throw RecipeError(location, "source '\(s)' matches no file in the build context \(context)")
            }
            for m in matches { try refuseOutside(m, source: s) }
            out += matches
        }
        return out
    }

    /// Refuses a match reached through a symlink that leaves the context (`rootlink/etc/shadow`
    /// with `rootlink -> /`, or what `linkdir/*` finds in an outside `linkdir`): the folder it is
    /// in must really be in the context. Symlinks inside the context that stay inside are
    /// followed, as the kernel would; the match itself, if a symlink, is copied as one, not read.
    func refuseOutside(_ match: String, source: String) throws {
        guard match.contains("/") else { return }
        let folder = "\(context)/" + (match as NSString).deletingLastPathComponent
        let real: String, contextReal: String
        do {
            real = try RootedPath.real(folder)
            contextReal = try RootedPath.real(context)
        } catch {
            throw RecipeError(location, "source '\(source)': \(error)")
        }
        guard RootedPath.isWithin(real, contextReal) else {
            throw RecipeError(location, "source '\(source)': '\(match)' is reached through a symlink that leaves the build context (its folder is \(real))")
        }
    }

    /// Paths (relative) matching a pattern whose components may hold `*`, `?`, `[...]`.
    package func glob(_ pattern: String) throws -> [String] {
        if pattern.isEmpty { return [""] }
        var current = [""]
        for comp in pattern.split(separator: "/").map(String.init) {
            var next: [String] = []
            for base in current {
                let dir = base.isEmpty ? context : "\(context)/\(base)"
                if comp.contains(where: { "*?[".contains($0) }) {
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
                    for n in names.sorted() where fnmatch(comp, n, FNM_PERIOD) == 0 {
                        next.append(base.isEmpty ? n : "\(base)/\(n)")
                    }
                } else {
                    let rel = base.isEmpty ? comp : "\(base)/\(comp)"
                    var st = stat()
                    if lstat("\(context)/\(rel)", &st) == 0 { next.append(rel) }
                }
            }
            current = next
        }
        return current.filter { !ignore.isIgnored($0) || $0.isEmpty }
    }
}
