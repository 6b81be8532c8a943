import Foundation
import Registry

// FROM and what may come before it: global ARGs.
extension RecipeParser {
    /// An instruction before FROM: a global ARG (nil back), or FROM itself, which gives the base
    /// and where FROM stands.
    func parseBeforeFrom(_ i: InstructionLine, state: inout State) throws -> (base: BaseImage, location: SourceLocation)? {
        switch i.upper {
        case "ARG":
            try state.arg(i.args, loc: i.location, global: true, parser: self, line: i.line, offset: i.argsOffset)
            return nil
        case "FROM":
            let base = try parseFrom(i.args, state: state, line: i.line, offset: i.argsOffset)
            state.enterStage()
            return (base, i.location)
        default:
            throw RecipeError(i.location, "the recipe must start with FROM (only ARG may come before it), found \(i.keyword)")
        }
    }

    func parseFrom(_ args: String, state: State, line: LogicalLine, offset: Int) throws -> BaseImage {
        let ws = try words(args, line: line, offset: offset, escape: state.escape)
        var rest = ws
        while let f = rest.first, f.text.hasPrefix("--") {
            throw RecipeError(location(line, f.offset), "FROM does not take \(f.text.split(separator: "=").first ?? "")")
        }
        guard let image = rest.first else { throw RecipeError(location(line, offset), "FROM needs an image") }
        rest.removeFirst()
        if !rest.isEmpty {
            guard rest.count == 2, rest[0].text.lowercased() == "as" else {
                throw RecipeError(location(line, rest[0].offset), "expected FROM IMAGE [AS NAME]")
            }
        }
        let ref = try substitute(image.text, state.globalArgs, line: line, offset: image.offset)
        let loc = location(line, image.offset)
        guard !ref.isEmpty else { throw RecipeError(loc, "FROM needs an image, not an empty name") }
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
        if let remote = try registryReference(ref, at: loc) { return .registry(remote) }
        // Empty pieces kept: `FROM :` has an empty name, not no name at all (which trapped).
        let parts = ref.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        if parts[0] == "debian" || parts[0] == "docker.io/library/debian" {
            guard parts.count == 2, !parts[1].isEmpty, parts[1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw RecipeError(loc, "FROM debian needs a suite, e.g. debian:bookworm")
            }
            return .debian(suite: parts[1], variant: "minbase")
        }
        throw RecipeError(loc, "unsupported base '\(ref)': use debian:SUITE (built with mmdebstrap), scratch, oci:PATH[:TAG], REGISTRY/REPO[:TAG] or REPO@sha256:HEX")
    }

    /// A reference to a registry's image (`ImageReference.looksLikeRegistryReference`); nil for
    /// anything else (`debian:bookworm` stays the mmdebstrap base).
    func registryReference(_ ref: String, at loc: SourceLocation) throws -> ImageReference? {
        guard ImageReference.looksLikeRegistryReference(ref) else { return nil }
        do { return try ImageReference(parsing: ref) } catch { throw RecipeError(loc, "FROM \(ref): \(error)") }
    }
}

extension BaseImage {
    /// A Debian base made with the variant `# base-variant=` names; other bases as they are.
    func with(variant: String) -> BaseImage {
        if case let .debian(suite, _) = self { return .debian(suite: suite, variant: variant) }
        return self
    }
}
