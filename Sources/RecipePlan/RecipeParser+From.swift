import Foundation
import Registry

// FROM and what may come before it: global ARGs.
extension RecipeParser {
    /// What FROM says: the base, where FROM stands, the image as substituted, the stage's name.
    struct FromLine {
        var base: BaseImage
        var location: SourceLocation
        var reference: String
        var stageName: String?
        /// `FROM STAGE`: the earlier stage's index.
        var parentStage: Int?
    }

    /// An instruction before FROM: a global ARG (nil back), or FROM itself.
    func parseBeforeFrom(_ i: InstructionLine, state: inout State) throws -> FromLine? {
        switch i.upper {
        case "ARG":
            try state.arg(i.args, loc: i.location, global: true, parser: self, line: i.line, offset: i.argsOffset)
            return nil
        case "FROM":
            state.endStage()
            var from = try parseFrom(i.args, state: state, line: i.line, offset: i.argsOffset)
            from.location = i.location
            try recordStage(from.stageName, state: &state, at: i.location)
            state.enterStage(inheriting: from.parentStage.map { state.stageEnds[$0] })
            return from
        default:
            throw RecipeError(i.location, "the recipe must start with FROM (only ARG may come before it), found \(i.keyword)")
        }
    }

    /// A stage's name (`AS NAME`): lowercase letters, digits, `-`, `_`, `.`, a letter first, not
    /// one an earlier stage has; recorded for `COPY --from`.
    func recordStage(_ name: String?, state: inout State, at loc: SourceLocation) throws {
        if let name {
            let lower = name.lowercased()
            guard lower.first?.isLetter == true, lower.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw RecipeError(loc, "'\(name)' is not a stage name (a letter, then letters, digits, -, _ or .)")
            }
            guard !state.stageNames.contains(lower) else { throw RecipeError(loc, "a stage named '\(name)' comes earlier: stage names are unique") }
        }
        state.stageNames.append(name?.lowercased())
    }

    func parseFrom(_ args: String, state: State, line: LogicalLine, offset: Int) throws -> FromLine {
        let (image, stageName) = try fromWords(args, state: state, line: line, offset: offset)
        let ref = try substitute(image.text, state.fromVariables, line: line, offset: image.offset)
        // An earlier stage, by name (as BuildKit finds one) or by number.
        if let i = state.stageNames.firstIndex(of: ref.lowercased()) ?? Int(ref).flatMap({ $0 >= 0 && $0 < state.stageNames.count ? $0 : nil }) {
            return FromLine(base: .scratch, location: location(line, 0), reference: ref, stageName: stageName, parentStage: i)
        }
        let base = try baseImage(ref, at: location(line, image.offset), what: "FROM")
        return FromLine(base: base, location: location(line, 0), reference: ref, stageName: stageName)
    }

    /// FROM's words: `[--platform=P] IMAGE [AS NAME]`, the flags checked.
    func fromWords(_ args: String, state: State, line: LogicalLine, offset: Int) throws -> (image: Word, stage: String?) {
        let ws = try words(args, line: line, offset: offset, escape: state.escape)
        var rest = ws
        while let f = rest.first, f.text.hasPrefix("--") {
            try checkPlatform(f, state: state, line: line)
            rest.removeFirst()
        }
        guard let image = rest.first else { throw RecipeError(location(line, offset), "FROM needs an image") }
        rest.removeFirst()
        if !rest.isEmpty {
            guard rest.count == 2, rest[0].text.lowercased() == "as" else {
                throw RecipeError(location(line, rest[0].offset), "expected FROM IMAGE [AS NAME]")
            }
        }
        return (image, rest.last?.text)
    }

    /// The base an image reference names (`what`: the instruction, for errors).
    func baseImage(_ ref: String, at loc: SourceLocation, what: String) throws -> BaseImage {
        guard !ref.isEmpty else { throw RecipeError(loc, "\(what) needs an image, not an empty name") }
        if ref == "scratch" { return .scratch }
        if ref.hasPrefix("oci:") {
            let spec = String(ref.dropFirst(4))
            guard !spec.isEmpty else { throw RecipeError(loc, "oci: needs a layout path, e.g. oci:../base:latest") }
            let slash = spec.lastIndex(of: "/") ?? spec.startIndex
            if let colon = spec[slash...].lastIndex(of: ":") {
                return .ociLayout(path: String(spec[..<colon]), tag: String(spec[spec.index(after: colon)...]))
            }
            return .ociLayout(path: spec, tag: nil)
        }
        if let remote = try registryReference(ref, at: loc, what: what) { return .registry(remote) }
        // Empty pieces kept: `FROM :` has an empty name, not no name at all (which trapped).
        let parts = ref.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        if parts[0] == "debian" || parts[0] == "docker.io/library/debian" {
            // `debian` alone is docker's debian:latest: only the local store may hold it (mmdebstrap needs a suite).
            if parts.count == 1 { return .local("debian:latest") }
            guard parts.count == 2, !parts[1].isEmpty, parts[1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw RecipeError(loc, "\(what) debian needs a suite, e.g. debian:bookworm")
            }
            if parts[1].hasSuffix("-slim") && parts[1].count > 5 { return .debian(suite: String(parts[1].dropLast(5)), variant: "minbase", slim: true) }
            return .debian(suite: parts[1], variant: "minbase")
        }
        guard RecipeParser.isLocalName(ref) else {
            throw RecipeError(loc, "unsupported base '\(ref)': use NAME[:TAG] (an image built here with -t), debian:SUITE[-slim] (built with mmdebstrap), scratch, oci:PATH[:TAG], REGISTRY/REPO[:TAG] or REPO@sha256:HEX")
        }
        return .local(RecipeParser.storeName(ref))
    }

    /// A name the local image store may hold: `NAME[:TAG]`, NAME's components lowercase letters,
    /// digits and `._-` separated by `/`, TAG as docker allows one.
    static func isLocalName(_ ref: String) -> Bool {
        let parts = ref.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let name = parts[0]
        let nameOK = name.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { c in
            c.first.map { $0.isLetter || $0.isNumber } ?? false
        } && name.allSatisfy { ($0.isLowercase || $0.isNumber || "._-/".contains($0)) && $0.isASCII }
        guard nameOK else { return false }
        guard parts.count == 2 else { return true }
        let tag = parts[1]
        return !tag.isEmpty && tag.count <= 128 && tag.first != "." && tag.first != "-" && tag.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    /// The store's name of a reference: `NAME:TAG`, `latest` when no tag is given.
    public static func storeName(_ ref: String) -> String {
        let slash = ref.lastIndex(of: "/") ?? ref.startIndex
        return ref[slash...].contains(":") ? ref.lowercased() : ref.lowercased() + ":latest"
    }

    /// A reference to a registry's image (`ImageReference.looksLikeRegistryReference`); nil for
    /// anything else (`debian:bookworm` stays the mmdebstrap base).
    func registryReference(_ ref: String, at loc: SourceLocation, what: String) throws -> ImageReference? {
        guard ImageReference.looksLikeRegistryReference(ref) else { return nil }
        do { return try ImageReference(parsing: ref) } catch { throw RecipeError(loc, "\(what) \(ref): \(error)") }
    }
}

// `--platform`: the host's platform only.
extension RecipeParser {
    /// The platform builds are for: the host's, amd64 Linux.
    static let platform = "linux/amd64"

    /// The platform ARGs BuildKit predefines, for the host's platform.
    static let platformArgs: [String: String] = [
        "TARGETPLATFORM": platform, "TARGETOS": "linux", "TARGETARCH": "amd64", "TARGETVARIANT": "",
        "BUILDPLATFORM": platform, "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
    ]

    /// The platforms that name the host's: `linux/amd64`, also written `linux/x86_64`, with a
    /// microarchitecture level or not.
    static func isHostPlatform(_ p: String) -> Bool {
        let parts = p.lowercased().split(separator: "/", omittingEmptySubsequences: false)
        return parts.count >= 2 && parts.count <= 3 && parts[0] == "linux" && ["amd64", "x86_64", "x86-64"].contains(parts[1])
            && (parts.count == 2 || ["v1", "v2", "v3", "v4"].contains(parts[2]))
    }

    /// A FROM flag: `--platform=P`, substituted, for the host's platform only.
    func checkPlatform(_ f: Word, state: State, line: LogicalLine) throws {
        let at = location(line, f.offset)
        let parts = f.text.dropFirst(2).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard parts[0] == "platform" else { throw RecipeError(at, "FROM does not take '\(f.text)' (it takes --platform=)") }
        guard parts.count == 2, !parts[1].isEmpty else { throw RecipeError(at, "--platform needs a value (--platform=linux/amd64)") }
        let value = try substitute(parts[1], state.fromVariables, line: line, offset: f.offset + 11)
        guard RecipeParser.isHostPlatform(value) else {
            throw RecipeError(at, "--platform=\(value): only the host's platform, \(RecipeParser.platform), can be built here")
        }
    }
}

extension BaseImage {
    /// A Debian base made with the variant `# base-variant=` names; other bases as they are.
    func with(variant: String) -> BaseImage {
        if case let .debian(suite, _, slim) = self { return .debian(suite: suite, variant: variant, slim: slim) }
        return self
    }
}
