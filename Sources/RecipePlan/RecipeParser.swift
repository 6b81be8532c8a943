import Foundation
import Host

/// Parses a Containerfile into a `Recipe`.
///
/// Accepted: FROM, RUN, COPY, ADD (local sources), ENV, ARG, WORKDIR, USER, LABEL, CMD, ENTRYPOINT,
/// EXPOSE, VOLUME, SHELL, STOPSIGNAL and MAINTAINER (as a label); line continuations (the escape
/// character, `\` or as the `escape` directive says), comments, parser directives, shell and exec
/// (JSON) forms, and ARG/ENV substitution (`$V`, `${V}`, `${V:-word}`, `${V:+word}`, `${V-word}`,
/// `${V+word}`, `${V:?message}`) in the instructions where Containerfiles substitute.
///
/// imgbench's own spellings, which a Containerfile reader ignores or recognises:
/// - parser directives at the top: `# vm-size=4G`, `# vm-filesystem=ext4`, `# vm-boot=kernel`, `# vm-kernel=image|host`,
///   `# vm-cluster-size=64K`, `# base-variant=minbase`, `# workloads=sysbench-cpu,fio-randrw` (the runtime
///   workloads the image carries, named in the hand-off manifest);
/// - `--target=container|vm|both` on RUN, COPY and ADD: a step for one build only.
public struct RecipeParser {
    public var file: String
    /// Values for ARG, as `--build-arg` gives them.
    public var buildArgs: [String: String]

    public init(file: String, buildArgs: [String: String] = [:]) {
        self.file = file
        self.buildArgs = buildArgs
    }

    /// Reads and parses a recipe folder (holding `Containerfile` or `Dockerfile`) or a recipe file.
    public static func load(_ path: String, buildArgs: [String: String] = [:]) throws -> Recipe {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw RecipeError(SourceLocation(file: path, line: 0, column: 0), "no such recipe folder or file")
        }
        var file = path
        if isDir.boolValue {
            let names = ["Containerfile", "Dockerfile"]
            guard let found = names.map({ (path as NSString).appendingPathComponent($0) })
                .first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw RecipeError(SourceLocation(file: path, line: 0, column: 0), "the recipe folder holds no Containerfile or Dockerfile")
            }
            file = found
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw RecipeError(SourceLocation(file: file, line: 0, column: 0), "cannot read the recipe file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RecipeError(SourceLocation(file: file, line: 1, column: 1), "the recipe file is not UTF-8 text")
        }
        var recipe = try RecipeParser(file: file, buildArgs: buildArgs).parse(text)
        let folder = (file as NSString).deletingLastPathComponent
        recipe.context = folder.isEmpty ? "." : folder
        recipe.name = RecipeParser.recipeName(folder: recipe.context)
        return recipe
    }

    /// A recipe's name: its folder's name, lowercased, as an image reference allows.
    static func recipeName(folder: String) -> String {
        let base = (URL(fileURLWithPath: folder).standardizedFileURL.lastPathComponent).lowercased()
        let cleaned = base.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "-" }
        return String(cleaned).isEmpty ? "recipe" : String(cleaned)
    }

    // MARK: - Lines

    /// One instruction's text with continuations joined, and where each character came from.
    struct LogicalLine {
        var text: [Character] = []
        var positions: [(line: Int, column: Int)] = []
        var startLine = 0

        var string: String { String(text) }
    }

    func location(_ l: LogicalLine, _ offset: Int) -> SourceLocation {
        if l.positions.isEmpty { return SourceLocation(file: file, line: l.startLine, column: 1) }
        let p = l.positions[min(max(offset, 0), l.positions.count - 1)]
        return SourceLocation(file: file, line: p.line, column: p.column + (offset >= l.positions.count ? 1 : 0))
    }

    public func parse(_ text: String) throws -> Recipe {
        let physical = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            line.hasSuffix("\r") ? line.dropLast() : line
        }
        // Parser directives: `# key=value` lines at the very top.
        var vm = VMSettings()
        var variant = "minbase"
        var escape: Character = "\\"
        var workloads: [WorkloadName] = []
        var index = 0
        var seenDirectives = Set<String>()
        while index < physical.count {
            let line = physical[index]
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("#") else { break }
            let body = trimmed.dropFirst().trimmingCharacters(in: .whitespaces)
            guard let eq = body.firstIndex(of: "="), !body[..<eq].contains(" ") else { break }
            let key = body[..<eq].lowercased().trimmingCharacters(in: .whitespaces)
            let value = body[body.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            let column = (line.firstIndex(of: "#").map { line.distance(from: line.startIndex, to: $0) } ?? 0) + 1
            let loc = SourceLocation(file: file, line: index + 1, column: column)
            if seenDirectives.contains(key) { throw RecipeError(loc, "parser directive '\(key)' given twice") }
            seenDirectives.insert(key)
            switch key {
            case "escape":
                guard value == "\\" || value == "`" else { throw RecipeError(loc, "escape must be \\ or `, not '\(value)'") }
                escape = value.first!
            case "syntax", "check":
                break // BuildKit's; nothing to do here
            case "vm-size":
                guard let bytes = ByteCount.parse(value), bytes >= 64 << 20 else {
                    throw RecipeError(loc, "vm-size '\(value)' is not a size of at least 64M (e.g. 4G)")
                }
                vm.size = bytes
            case "vm-filesystem":
                guard ["ext4", "xfs", "btrfs"].contains(value) else { throw RecipeError(loc, "vm-filesystem '\(value)' must be ext4, xfs or btrfs") }
                vm.filesystem = value
            case "vm-boot":
                guard let b = VMSettings.Boot(rawValue: value) else {
                    throw RecipeError(loc, "vm-boot '\(value)' must be one of \(VMSettings.Boot.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                vm.boot = b
            case "vm-kernel":
                guard let k = VMSettings.Kernel(rawValue: value) else {
                    throw RecipeError(loc, "vm-kernel '\(value)' must be image or host")
                }
                vm.kernel = k
            case "vm-cluster-size":
                guard let bytes = ByteCount.parse(value), bytes.nonzeroBitCount == 1, (512...(2 << 20)).contains(bytes) else {
                    throw RecipeError(loc, "vm-cluster-size '\(value)' must be a power of two from 512 to 2M")
                }
                vm.clusterSize = Int(bytes)
            case "base-variant":
                guard ["extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "debootstrap", "standard"].contains(value) else {
                    throw RecipeError(loc, "base-variant '\(value)' is not an mmdebstrap variant")
                }
                variant = value
            case "workloads":
                // Comma-separated workload names, each with its place: the runtime suite, which knows
                // the workloads, checks them (`Workload.validate`), as the parser cannot see it.
                let valueColumn = line.distance(from: line.startIndex, to: line.index(after: line.firstIndex(of: "=")!))
                    + (line[line.index(after: line.firstIndex(of: "=")!)...].prefix { $0 == " " || $0 == "\t" }.count) + 1
                var offset = 0
                for part in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let name = part.trimmingCharacters(in: .whitespaces)
                    let at = SourceLocation(file: file, line: index + 1, column: valueColumn + offset + (part.prefix { $0 == " " }.count))
                    if !workloads.contains(where: { $0.name == name }) { workloads.append(WorkloadName(name: name, location: at)) }
                    offset += part.count + 1
                }
            default:
                if key.hasPrefix("vm-") || key.hasPrefix("base-") {
                    throw RecipeError(loc, "unknown parser directive '\(key)' (vm-size, vm-filesystem, vm-boot, vm-kernel, vm-cluster-size, base-variant, workloads)")
                }
                // Other directive-like comments are comments, as Containerfile readers treat them.
            }
            index += 1
        }

        // Logical lines.
        var lines: [LogicalLine] = []
        var current: LogicalLine?
        for n in index..<physical.count {
            let line = Array(physical[n])
            let trimmed = String(line).trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") {
                // Comments, also inside a continuation. One of imgbench's directives out of place
                // would otherwise be silently a comment.
                let body = trimmed.dropFirst().trimmingCharacters(in: .whitespaces).lowercased()
                if let eq = body.firstIndex(of: "="), !body[..<eq].contains(" "),
                   ["vm-", "base-variant", "workloads"].contains(where: { body.hasPrefix($0) }) {
                    throw RecipeError(SourceLocation(file: file, line: n + 1, column: 1),
                                      "parser directive '\(body[..<eq])' must come before any other line, comment or blank line of the recipe")
                }
                continue
            }
            if trimmed.isEmpty && current == nil { continue }
            var l = current ?? LogicalLine(startLine: n + 1)
            var chars = line
            // Trailing whitespace after the escape character still continues the line.
            var end = chars.count
            while end > 0, chars[end - 1] == " " || chars[end - 1] == "\t" { end -= 1 }
            let continues = end > 0 && chars[end - 1] == escape
            if continues { chars = Array(chars[0..<(end - 1)]) }
            for (col, c) in chars.enumerated() {
                l.text.append(c)
                l.positions.append((n + 1, col + 1))
            }
            if continues {
                current = l
            } else {
                current = nil
                if !l.string.trimmingCharacters(in: .whitespaces).isEmpty { lines.append(l) }
            }
        }
        if let l = current, !l.string.trimmingCharacters(in: .whitespaces).isEmpty { lines.append(l) }

        var state = State(buildArgs: buildArgs, escape: escape)
        var base: BaseImage?
        var baseLocation = SourceLocation(file: file, line: 1, column: 1)
        var steps: [Step] = []
        for l in lines {
            let s = l.string
            let leading = s.prefix { $0 == " " || $0 == "\t" }.count
            let rest = s.dropFirst(leading)
            let keyword = String(rest.prefix { !$0.isWhitespace })
            let argsStart = leading + keyword.count + rest.dropFirst(keyword.count).prefix { $0.isWhitespace }.count
            let args = String(s.dropFirst(argsStart))
            let loc = location(l, leading)
            let upper = keyword.uppercased()
            if base == nil {
                switch upper {
                case "ARG":
                    try state.arg(args, loc: loc, global: true, parser: self, line: l, offset: argsStart)
                    continue
                case "FROM":
                    base = try parseFrom(args, state: state, line: l, offset: argsStart)
                    baseLocation = loc
                    state.enterStage()
                    continue
                default:
                    throw RecipeError(loc, "the recipe must start with FROM (only ARG may come before it), found \(keyword)")
                }
            }
            if let step = try parseStep(upper, keyword: keyword, args: args, state: &state, line: l, offset: argsStart, loc: loc) {
                steps.append(step)
            }
        }
        guard let b = base else {
            throw RecipeError(SourceLocation(file: file, line: max(1, physical.count), column: 1), "the recipe has no FROM")
        }
        let finalBase: BaseImage
        if case let .debian(suite, _) = b { finalBase = .debian(suite: suite, variant: variant) } else { finalBase = b }
        return Recipe(name: RecipeParser.recipeName(folder: (file as NSString).deletingLastPathComponent),
                      file: file, context: (file as NSString).deletingLastPathComponent, vm: vm,
                      base: finalBase, baseLocation: baseLocation, steps: steps, declaredWorkloads: workloads)
    }

    // MARK: - Instructions

    /// Variables in force while parsing: ARG values, ENV values, the shell, the working directory.
    struct State {
        var buildArgs: [String: String]
        var escape: Character
        var globalArgs: [String: String] = [:]
        var args: [KeyValue] = []
        var env: [KeyValue] = []
        var workdir = "/"
        var shell = ["/bin/sh", "-c"]

        /// What substitution sees: ENV wins over ARG, as in Containerfiles.
        var variables: [String: String] {
            var v: [String: String] = [:]
            for a in args { v[a.key] = a.value }
            for e in env { v[e.key] = e.value }
            return v
        }

        mutating func enterStage() {
            args = []
        }

        static func set(_ list: inout [KeyValue], _ kv: KeyValue) {
            list.removeAll { $0.key == kv.key }
            list.append(kv)
        }

        mutating func arg(_ text: String, loc: SourceLocation, global: Bool, parser: RecipeParser, line: LogicalLine, offset: Int) throws {
            let words = try parser.words(text, line: line, offset: offset, escape: escape)
            guard !words.isEmpty else { throw RecipeError(loc, "ARG needs a name") }
            for w in words {
                let name: String, value: String?
                if let eq = w.text.firstIndex(of: "=") {
                    name = String(w.text[..<eq])
                    value = try parser.substitute(String(w.text[w.text.index(after: eq)...]), global ? globalArgs : variables, line: line, offset: w.offset)
                } else {
                    name = w.text
                    value = nil
                }
                guard RecipeParser.isName(name) else { throw RecipeError(parser.location(line, w.offset), "'\(name)' is not a valid ARG name") }
                let resolved = buildArgs[name] ?? value ?? (global ? nil : globalArgs[name])
                if global {
                    if let r = resolved { globalArgs[name] = r }
                } else if let r = resolved {
                    State.set(&args, KeyValue(name, r))
                }
            }
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
        let parts = ref.split(separator: ":", maxSplits: 1).map(String.init)
        if parts[0] == "debian" || parts[0] == "docker.io/library/debian" {
            guard parts.count == 2, !parts[1].isEmpty, parts[1].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw RecipeError(loc, "FROM debian needs a suite, e.g. debian:bookworm")
            }
            return .debian(suite: parts[1], variant: "minbase")
        }
        throw RecipeError(loc, "unsupported base '\(ref)': use debian:SUITE (built with mmdebstrap), scratch, or oci:PATH[:TAG]")
    }

    func parseStep(_ upper: String, keyword: String, args: String, state: inout State,
                   line: LogicalLine, offset: Int, loc: SourceLocation) throws -> Step? {
        var target = StepTarget.both
        var flags: [String: String] = [:]
        var flagLocations: [String: SourceLocation] = [:]
        var body = args
        var bodyOffset = offset
        // Flags: --name=value before the arguments.
        func takeFlags(allowed: Set<String>) throws {
            while body.hasPrefix("--") {
                let flag = String(body.prefix { !$0.isWhitespace })
                let flagLoc = location(line, bodyOffset)
                let parts = flag.dropFirst(2).split(separator: "=", maxSplits: 1).map(String.init)
                let name = parts[0]
                guard allowed.contains(name) else {
                    throw RecipeError(flagLoc, "\(upper) does not take --\(name)" + (allowed.isEmpty ? "" : " (it takes \(allowed.sorted().map { "--" + $0 }.joined(separator: ", ")))"))
                }
                guard parts.count == 2, !parts[1].isEmpty else { throw RecipeError(flagLoc, "--\(name) needs a value (--\(name)=VALUE)") }
                flags[name] = parts[1]
                flagLocations[name] = flagLoc
                let skip = flag.count + body.dropFirst(flag.count).prefix { $0.isWhitespace }.count
                body = String(body.dropFirst(skip))
                bodyOffset += skip
            }
            if let t = flags["target"] {
                guard let st = StepTarget(rawValue: t) else { throw RecipeError(flagLocations["target"] ?? loc, "--target must be container, vm or both, not '\(t)'") }
                target = st
            }
        }
        func requireBody() throws {
            if body.trimmingCharacters(in: .whitespaces).isEmpty { throw RecipeError(loc, "\(upper) needs arguments") }
        }
        let instruction: Step.Instruction
        switch upper {
        case "RUN":
            try takeFlags(allowed: ["target"])
            try requireBody()
            instruction = .run(try command(body, line: line, offset: bodyOffset))
        case "COPY", "ADD":
            try takeFlags(allowed: ["target", "chown", "chmod"])
            try requireBody()
            var paths: [String]
            if let json = jsonArray(body) {
                paths = json
            } else {
                paths = try words(body, line: line, offset: bodyOffset, escape: state.escape).map {
                    try substitute($0.text, state.variables, line: line, offset: $0.offset)
                }
            }
            guard paths.count >= 2 else { throw RecipeError(loc, "\(upper) needs at least one source and a destination") }
            for p in paths.dropLast() where upper == "ADD" && (p.contains("://") || p.hasPrefix("git@")) {
                throw RecipeError(loc, "ADD from a URL (\(p)) is not supported: the build reaches no network but the package mirrors; add the file to the recipe folder")
            }
            let dest = paths.removeLast()
            let resolvedDest = dest.hasPrefix("/") ? dest : LexicalPath.join(state.workdir, dest) + (dest.hasSuffix("/") ? "/" : "")
            if let chmod = flags["chmod"], UInt32(chmod, radix: 8) == nil || chmod.count > 4 {
                throw RecipeError(loc, "--chmod=\(chmod) is not an octal mode")
            }
            instruction = upper == "COPY"
                ? .copy(sources: paths, destination: resolvedDest, chown: flags["chown"], chmod: flags["chmod"])
                : .add(sources: paths, destination: resolvedDest, chown: flags["chown"], chmod: flags["chmod"])
        case "ENV", "LABEL":
            try takeFlags(allowed: [])
            try requireBody()
            let pairs = try keyValues(body, keyword: upper, line: line, offset: bodyOffset, state: state)
            if upper == "ENV" {
                for p in pairs { State.set(&state.env, p) }
                instruction = .env(pairs)
            } else {
                instruction = .label(pairs)
            }
        case "MAINTAINER":
            try takeFlags(allowed: [])
            try requireBody()
            instruction = .label([KeyValue("maintainer", body.trimmingCharacters(in: .whitespaces))])
        case "ARG":
            try takeFlags(allowed: [])
            try requireBody()
            try state.arg(body, loc: loc, global: false, parser: self, line: line, offset: bodyOffset)
            let name = String(body.prefix { $0 != "=" && !$0.isWhitespace })
            instruction = .arg(name: name, value: state.args.first { $0.key == name }?.value)
        case "WORKDIR":
            try takeFlags(allowed: [])
            try requireBody()
            let dir = try substitute(body.trimmingCharacters(in: .whitespaces), state.variables, line: line, offset: bodyOffset)
            state.workdir = dir.hasPrefix("/") ? LexicalPath.join("/", dir) : LexicalPath.join(state.workdir, dir)
            instruction = .workdir(state.workdir)
        case "USER":
            try takeFlags(allowed: [])
            try requireBody()
            instruction = .user(try substitute(body.trimmingCharacters(in: .whitespaces), state.variables, line: line, offset: bodyOffset))
        case "CMD":
            try takeFlags(allowed: [])
            try requireBody()
            instruction = .cmd(try command(body, line: line, offset: bodyOffset))
        case "ENTRYPOINT":
            try takeFlags(allowed: [])
            try requireBody()
            instruction = .entrypoint(try command(body, line: line, offset: bodyOffset))
        case "EXPOSE":
            try takeFlags(allowed: [])
            try requireBody()
            var ports: [String] = []
            for w in try words(body, line: line, offset: bodyOffset, escape: state.escape) {
                let p = try substitute(w.text, state.variables, line: line, offset: w.offset)
                let parts = p.split(separator: "/", maxSplits: 1)
                let proto = parts.count == 2 ? parts[1].lowercased() : "tcp"
                let range = parts[0].split(separator: "-")
                guard !range.isEmpty, range.count <= 2, range.allSatisfy({ UInt16($0) != nil }), ["tcp", "udp", "sctp"].contains(proto) else {
                    throw RecipeError(location(line, w.offset), "'\(p)' is not a port (PORT[/tcp|udp|sctp])")
                }
                ports.append("\(parts[0])/\(proto)")
            }
            instruction = .expose(ports)
        case "VOLUME":
            try takeFlags(allowed: [])
            try requireBody()
            let vols = try jsonArray(body) ?? words(body, line: line, offset: bodyOffset, escape: state.escape).map {
                try substitute($0.text, state.variables, line: line, offset: $0.offset)
            }
            instruction = .volume(vols)
        case "SHELL":
            try takeFlags(allowed: [])
            guard let a = jsonArray(body), !a.isEmpty else { throw RecipeError(loc, "SHELL needs the exec (JSON array) form, e.g. SHELL [\"/bin/bash\", \"-c\"]") }
            state.shell = a
            instruction = .shell(a)
        case "STOPSIGNAL":
            try takeFlags(allowed: [])
            try requireBody()
            instruction = .stopSignal(try substitute(body.trimmingCharacters(in: .whitespaces), state.variables, line: line, offset: bodyOffset))
        case "FROM":
            throw RecipeError(loc, "a second FROM: multi-stage recipes are not supported (one recipe builds one image and one disk)")
        case "ONBUILD", "HEALTHCHECK":
            throw RecipeError(loc, "\(upper) is not supported by imgbench")
        default:
            throw RecipeError(loc, "unknown instruction '\(keyword)'")
        }
        if case .run = instruction {} else if case .copy = instruction {} else if case .add = instruction {} else if target != .both {
            throw RecipeError(loc, "--target applies to RUN, COPY and ADD only")
        }
        return Step(instruction: instruction, target: target, location: loc,
                    text: "\(upper) \(args.trimmingCharacters(in: .whitespaces))",
                    environment: state.env, buildArgs: state.args)
    }

    func command(_ body: String, line: LogicalLine, offset: Int) throws -> CommandForm {
        if let a = jsonArray(body) {
            guard !a.isEmpty else { throw RecipeError(location(line, offset), "the exec form needs at least one element") }
            return .exec(a)
        }
        return .shell(body.trimmingCharacters(in: .whitespaces))
    }

    /// A JSON array of strings, or nil when the text is not one (then it is shell form).
    func jsonArray(_ body: String) -> [String]? {
        let t = body.trimmingCharacters(in: .whitespaces)
        guard t.hasPrefix("["), t.hasSuffix("]") else { return nil }
        return try? JSONDecoder().decode([String].self, from: Data(t.utf8))
    }

    func keyValues(_ body: String, keyword: String, line: LogicalLine, offset: Int, state: State) throws -> [KeyValue] {
        let ws = try words(body, line: line, offset: offset, escape: state.escape)
        guard let first = ws.first else { throw RecipeError(location(line, offset), "\(keyword) needs KEY=VALUE") }
        // The old form: `ENV KEY value with spaces`.
        if !first.text.contains("=") {
            guard keyword == "ENV", ws.count >= 2 else {
                throw RecipeError(location(line, first.offset), "\(keyword) needs KEY=VALUE, found '\(first.text)'")
            }
            let valueStart = body.index(body.startIndex, offsetBy: first.end - offset)
            let raw = body[valueStart...].trimmingCharacters(in: .whitespaces)
            return [KeyValue(first.text, try substitute(raw, state.variables, line: line, offset: first.end))]
        }
        var out: [KeyValue] = []
        var vars = state.variables
        for w in ws {
            guard let eq = w.text.firstIndex(of: "="), eq != w.text.startIndex else {
                throw RecipeError(location(line, w.offset), "\(keyword) needs KEY=VALUE, found '\(w.text)'")
            }
            let key = String(w.text[..<eq])
            if keyword == "ENV" && !RecipeParser.isName(key) {
                throw RecipeError(location(line, w.offset), "'\(key)' is not a valid variable name")
            }
            let value = try substitute(String(w.text[w.text.index(after: eq)...]), vars, line: line, offset: w.offset + key.count + 1)
            out.append(KeyValue(key, value))
        }
        if keyword == "ENV" { for kv in out { vars[kv.key] = kv.value } }
        return out
    }
}

