import struct Crypto.SHA256
import Foundation
import Host
import OCI

/// The step chain with its cache keys. A step's key is a digest of its parent's key, the
/// instruction as resolved, its target, the content of COPY/ADD sources, and the ARG/ENV values
/// it sees; both builds use the same keys, so a change to step k changes the keys of k and every
/// step after it, on both sides, and nothing before.
public struct BuildPlan: Sendable {
    public struct PlannedStep: Sendable {
        public var index: Int
        public var step: Step
        public var key: String
        /// For COPY/ADD: the context files read, relative to the context.
        public var sources: [String]
        /// For a plan made with `missingSources: .shown`: the sources that match no file, each
        /// with why (the step's key then stands for a build that would fail there).
        public var missing: [String] = []
    }

    /// What a COPY/ADD source that matches no file does to the plan: a build stops there; a
    /// plan that is only shown (`imgbench plan`) records it and goes on.
    public enum MissingSources: Sendable {
        case refused, shown
    }

    public var recipe: Recipe
    public var baseKey: String
    public var steps: [PlannedStep]
    public var ignore: ContextIgnore

    /// `baseKey` names the base (the Debian root's key, "scratch", or an OCI manifest digest).
    /// `stageKeys`: the last key of each earlier stage a `COPY --from` names (part of its key);
    /// `imageKeys`: the key of each image a `COPY --from=IMAGE` names, by reference.
    public static func make(_ recipe: Recipe, baseKey: String, missingSources: MissingSources = .refused,
                            stageKeys: [Int: String] = [:], imageKeys: [String: String] = [:]) throws -> BuildPlan {
        let ignore = try ContextIgnore.load(context: recipe.context)
        var key = digest(["imgbench-plan-v1", "base", baseKey])
        var planned: [PlannedStep] = []
        for (i, step) in recipe.steps.enumerated() {
            var parts = [key, "step", step.text, "\(step.instruction)", step.target.rawValue]
            parts += step.environment.map { "env \($0.key)=\($0.value)" }
            parts += step.buildArgs.map { "arg \($0.key)=\($0.value)" }
            parts += step.inlineFiles.map { "inline \($0.name) \($0.content)" }
            var sources: [String] = [], missing: [String] = []
            switch step.instruction {
            case .copy where step.copyFrom != nil:
                // The files come from the stage: its last key stands for them.
                parts.append("from-stage \(stageKeys[step.copyFrom!] ?? "unknown")")
            case .copy where step.copyFromImage != nil:
                // From an image: its base key (a manifest digest, a Debian root's key) stands for them.
                parts.append("from-image \(imageKeys[step.copyFromImage!.reference] ?? "unknown")")
            case let .copy(srcs, _, _, _), let .add(srcs, _, _, _):
                let copy = ContextCopy(context: recipe.context, ignore: ignore, location: step.location)
                // A remote ADD source is keyed by what names it (its URL or repository and ref,
                // and --checksum): its content is known only once it is fetched.
                let remote = step.remoteSources
                parts += remote.map { "remote \($0) \(step.flags["checksum"] ?? "") \(step.flags["keep-git-dir"] ?? "")" }
                (sources, missing) = try expand(srcs.filter { !remote.contains($0) }, with: copy, missingSources: missingSources)
                parts += try contentDigests(sources, context: recipe.context, ignore: ignore)
                parts += missing.map { "missing \($0)" }
            case .run:
                let bound = try boundSources(step, recipe: recipe, ignore: ignore, missingSources: missingSources, stageKeys: stageKeys)
                (parts, sources, missing) = (parts + bound.parts, bound.found, bound.missing)
            default:
                break
            }
            key = digest(parts)
            planned.append(PlannedStep(index: i + 1, step: step, key: key, sources: sources, missing: missing))
        }
        return BuildPlan(recipe: recipe, baseKey: baseKey, steps: planned, ignore: ignore)
    }

    /// The context files of a COPY/ADD's sources; with `.shown`, a source that matches no file is
    /// given back with the reason instead of stopping the plan.
    static func expand(_ srcs: [String], with copy: ContextCopy, missingSources: MissingSources) throws -> (found: [String], missing: [String]) {
        guard missingSources == .shown else { return (try copy.expand(srcs), []) }
        var found: [String] = [], missing: [String] = []
        for s in srcs {
            do {
                found += try copy.expand([s])
            } catch let e as RecipeError where e.message.contains("matches no file") {
                missing.append(e.message)
            }
        }
        return (found, missing)
    }

    /// What a RUN's bind mounts read, for its key: the content of a context source (found or
    /// missing, as for COPY), or a stage's last key and the source in it.
    static func boundSources(_ step: Step, recipe: Recipe, ignore: ContextIgnore, missingSources: MissingSources,
                             stageKeys: [Int: String]) throws -> (parts: [String], found: [String], missing: [String]) {
        var parts: [String] = [], found: [String] = [], missing: [String] = []
        for m in step.mounts where m.kind == .bind {
            if let from = m.from {
                parts.append("mount-from-stage \(stageKeys[from] ?? "unknown") \(m.source)")
                continue
            }
            let copy = ContextCopy(context: recipe.context, ignore: ignore, location: step.location)
            let (f, miss) = try expand([m.source], with: copy, missingSources: missingSources)
            parts += try contentDigests(f, context: recipe.context, ignore: ignore) + miss.map { "missing \($0)" }
            (found, missing) = (found + f, missing + miss)
        }
        return (parts, found, missing)
    }

    /// The key of the finalisation that makes the VM disk bootable, after the last step (v2: it
    /// discards the blocks its install freed, so a link made before is not reused).
    public var finalKey: String { BuildPlan.digest([steps.last?.key ?? BuildPlan.digest(["imgbench-plan-v1", "base", baseKey]), "finalise-v2"]) }

    /// The key of the stage as a whole: its last step's (the base's when it has none).
    public var lastKey: String { steps.last?.key ?? rootKey }

    public var rootKey: String { BuildPlan.digest(["imgbench-plan-v1", "base", baseKey]) }

    package static func digest(_ parts: [String]) -> String {
        var h = SHA256()
        for p in parts {
            h.update(data: Data("\(p.utf8.count):".utf8))
            h.update(data: Data(p.utf8))
        }
        return Digest(h.finalize()).hex
    }

    /// Path, type, mode and content digest of every file under the given sources, in order;
    /// only regular files are read (a device's numbers stand for its content).
    static func contentDigests(_ sources: [String], context: String, ignore: ContextIgnore) throws -> [String] {
        var out: [String] = []
        func visit(_ rel: String) throws {
            let path = rel.isEmpty ? context : "\(context)/\(rel)"
            var st = stat()
            guard lstat(path, &st) == 0 else { throw HostError.io(path: path, message: String(cString: strerror(errno))) }
            let mode = String(st.st_mode, radix: 8)
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                out.append("dir \(rel) \(mode)")
                for n in try FileManager.default.contentsOfDirectory(atPath: path).sorted() {
                    let child = rel.isEmpty ? n : "\(rel)/\(n)"
                    if !ignore.isIgnored(child) { try visit(child) }
                }
            case S_IFLNK:
                out.append("link \(rel) \(try FileManager.default.destinationOfSymbolicLink(atPath: path))")
            case S_IFREG:
                out.append("file \(rel) \(mode) \(try fileDigest(path))")
            case S_IFCHR, S_IFBLK:
                // A device is copied as a device, never read: its numbers are what it is.
                out.append("device \(rel) \(mode) \(st.deviceMajor):\(st.deviceMinor)")
            default:
                // A FIFO (or a socket) is copied as what it is; reading one would wait forever.
                out.append("node \(rel) \(mode)")
            }
        }
        for s in sources { try visit(s) }
        return out
    }

    /// The digest of a regular file's content. Opened without following a symlink or waiting
    /// (a file swapped for a FIFO after its lstat is refused, not waited on).
    static func fileDigest(_ path: String) throws -> String {
        var sha = SHA256()
        try FileSystem.readChunks(path) { sha.update(data: $0) }
        return Digest(sha.finalize()).hex
    }
}
