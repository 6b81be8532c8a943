import Foundation
import Host

/// `RUN --mount=type=cache|tmpfs|secret,...`: what a step has mounted while it runs, never in a
/// layer or a disk block. A cache mount is a folder of imgbench's cache, kept by its id (default:
/// its target) between steps, builds and both images; a tmpfs mount is empty memory; a secret
/// mount is a file the build's `--secret id=ID,src=FILE` names, read-only (default target
/// /run/secrets/ID); a bind mount is a path of the build context or of an earlier stage, read-only.
public struct RunMount: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case cache, tmpfs, secret, bind
    }

    public var kind: Kind
    /// Where it is mounted in the step's root (absolute).
    public var target: String
    /// A cache mount's id.
    public var id: String
    public var readOnly = false
    /// `sharing=locked`: one step at a time uses the cache (other builds wait).
    public var locked = false
    /// A tmpfs mount's size in bytes (nil: the kernel's default).
    public var size: UInt64?
    /// A secret mount that must be given (`required=true`): the step fails without it.
    public var required = false
    /// A bind mount's source: a path in the build context, or in stage `from`'s files.
    public var source = "/"
    public var from: Int?
    /// A new cache folder's owner and mode (default 0:0, 0755).
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var mode: UInt32 = 0o755

    public init(kind: Kind, target: String, id: String) {
        self.kind = kind
        self.target = target
        self.id = id
    }
}

extension RecipeParser {
    /// The `--mount=` values of a RUN (the flag repeats), read as BuildKit reads them: comma-separated
    /// `key=value` options, the type first or anywhere; target relative to WORKDIR.
    func runMounts(_ values: [(text: String, at: SourceLocation)], state: State) throws -> [RunMount] {
        try values.map { try runMount($0.text, at: $0.at, state: state) }
    }

    func runMount(_ spec: String, at loc: SourceLocation, state: State) throws -> RunMount {
        let workdir = state.workdir
        var options = RecipeParser.mountOptions(spec)
        let type = options.removeValue(forKey: "type") ?? "bind"
        guard let kind = RunMount.Kind(rawValue: type) else {
            throw RecipeError(loc, "RUN --mount=type=\(type) is not supported (type=bind, cache, tmpfs and secret are)")
        }
        let id = options.removeValue(forKey: "id")
        let given = options.removeValue(forKey: "target") ?? options.removeValue(forKey: "dst") ?? options.removeValue(forKey: "destination")
        guard let rawTarget = given ?? (kind == .secret ? id.map { "/run/secrets/\($0)" } : nil), !rawTarget.isEmpty else {
            throw RecipeError(loc, kind == .secret ? "RUN --mount=type=secret needs id=ID (or target=PATH)" : "RUN --mount needs target=PATH")
        }
        let target = LexicalPath.join(rawTarget.hasPrefix("/") ? "/" : workdir, rawTarget)
        guard target != "/" else { throw RecipeError(loc, "RUN --mount cannot mount on / itself") }
        // A secret's id defaults to its target's file name, as BuildKit's does.
        var m = RunMount(kind: kind, target: target, id: id ?? (kind == .secret ? (target as NSString).lastPathComponent : target))
        switch kind {
        case .cache: try cacheOptions(&options, &m, loc)
        case .tmpfs: try tmpfsOptions(&options, &m, loc)
        case .secret: m.required = (options.removeValue(forKey: "required") ?? "false") != "false"
        case .bind: try bindOptions(&options, &m, loc, state: state)
        }
        if let unknown = options.keys.sorted().first {
            throw RecipeError(loc, "RUN --mount=type=\(type) does not take '\(unknown)'")
        }
        return m
    }

    /// The comma-separated `key=value` options of a `--mount=`, keys lowercased; `ro` and `rw`
    /// are `readonly=true|false`, a key alone is `true`.
    static func mountOptions(_ spec: String) -> [String: String] {
        var options: [String: String] = [:]
        for part in spec.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            switch kv[0].lowercased() {
            case "ro": options["readonly"] = "true"
            case "rw": options["readonly"] = "false"
            case let key: options[key] = kv.count == 2 ? kv[1] : "true"
            }
        }
        return options
    }

    /// `id`, `sharing=shared|locked`, `readonly`, `uid`, `gid`, `mode` of a cache mount.
    func cacheOptions(_ options: inout [String: String], _ m: inout RunMount, _ loc: SourceLocation) throws {
        switch options.removeValue(forKey: "sharing") ?? "shared" {
        case "shared": break
        case "locked": m.locked = true
        case let other: throw RecipeError(loc, "RUN --mount sharing=\(other): imgbench shares a cache (shared) or takes it in turns (locked)")
        }
        if let ro = options.removeValue(forKey: "readonly") { m.readOnly = ro != "false" }
        for (key, radix) in [("uid", 10), ("gid", 10), ("mode", 8)] {
            guard let text = options.removeValue(forKey: key) else { continue }
            guard let n = UInt32(text, radix: radix) else { throw RecipeError(loc, "RUN --mount \(key)=\(text) is not a number") }
            switch key {
            case "uid": m.uid = n
            case "gid": m.gid = n
            default: m.mode = n & 0o7777
            }
        }
    }

    /// `source` (default the whole context, or stage) and `from` of a bind mount, read-only: a
    /// writable one (whose writes BuildKit discards) would write into the context here.
    func bindOptions(_ options: inout [String: String], _ m: inout RunMount, _ loc: SourceLocation, state: State) throws {
        let source = options.removeValue(forKey: "source") ?? options.removeValue(forKey: "src") ?? "/"
        guard LexicalPath.staysInside(source) else { throw RecipeError(loc, "RUN --mount source=\(source) climbs out of its context with ..") }
        m.source = LexicalPath.join("/", source)
        if let from = options.removeValue(forKey: "from") { m.from = try copySource(from, at: loc, state: state, flag: "RUN --mount from") }
        guard (options.removeValue(forKey: "readonly") ?? "true") != "false" else {
            throw RecipeError(loc, "RUN --mount=type=bind,rw is not supported: imgbench mounts a bind read-only, so that no write reaches the context or the stage")
        }
    }

    /// `size` of a tmpfs mount.
    func tmpfsOptions(_ options: inout [String: String], _ m: inout RunMount, _ loc: SourceLocation) throws {
        guard let text = options.removeValue(forKey: "size") else { return }
        guard let bytes = ByteCount.parse(text), bytes > 0 else { throw RecipeError(loc, "RUN --mount size=\(text) is not a size (e.g. 64M)") }
        m.size = bytes
    }
}
