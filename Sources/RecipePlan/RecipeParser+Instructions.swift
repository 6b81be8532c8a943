import Foundation
import Host

// The instructions after FROM: a handler each, and the flags (`--target=`, `--chown=`, `--chmod=`)
// read the same way for every instruction that takes them.
extension RecipeParser {
    /// An instruction's arguments with its flags read off the front.
    struct Arguments {
        var instruction: InstructionLine
        /// What follows the flags, and where it starts in the logical line.
        var body: String
        var offset: Int
        var flags: [String: String] = [:]
        /// Each value of a flag that may repeat (`--mount`), with where it stands.
        var repeated: [String: [(text: String, at: SourceLocation)]] = [:]
        var target = StepTarget.both

        var line: LogicalLine { instruction.line }

        /// Moves the body past `count` characters and the whitespace after them.
        mutating func skip(_ count: Int) {
            let n = count + body.dropFirst(count).prefix { $0.isWhitespace }.count
            body = String(body.dropFirst(n))
            offset += n
        }
        var upper: String { instruction.upper }
        var location: SourceLocation { instruction.location }
    }

    /// How an instruction reads: the flags it takes, whether it needs arguments, and its handler.
    struct InstructionSyntax {
        var flags: Set<String> = []
        var needsBody = true
        var parse: (Arguments, inout State) throws -> Step.Instruction
    }

    func parseStep(_ i: InstructionLine, state: inout State) throws -> Step {
        let syntax = try instructionSyntax(i)
        let a = try arguments(i, allowed: syntax.flags, needsBody: syntax.needsBody)
        let instruction = try syntax.parse(a, &state)
        if a.target != .both && !syntax.flags.contains("target") {
            throw RecipeError(i.location, "--target applies to RUN, COPY and ADD only")
        }
        var step = Step(instruction: instruction, target: a.target, location: i.location,
                        text: "\(i.upper) \(i.args.trimmingCharacters(in: .whitespaces))",
                        environment: state.env, buildArgs: state.args)
        step.flags = a.flags
        step.heredocs = i.line.heredocs
        step.inlineFiles = try inlineFiles(a, state: state)
        step.mounts = try runMounts(a.repeated["mount"] ?? [], state: state)
        step.stage = state.stageNames.count - 1
        if let from = a.repeated["from"]?.last {
            // A name no earlier stage has is an image, as docker reads it.
            if let stage = try copySource(from.text, at: from.at, state: state, image: true) {
                step.copyFrom = stage
            } else {
                step.copyFromImage = ImageSource(reference: from.text, base: try baseImage(from.text, at: from.at, what: "COPY --from"))
            }
            guard step.inlineFiles.isEmpty else { throw RecipeError(from.at, "COPY --from takes no here-document") }
        }
        if let n = a.flags["network"] {
            guard let network = Step.Network(rawValue: n) else {
                throw RecipeError(i.location, "--network must be default, none or host, not '\(n)'")
            }
            step.network = network
        }
        return step
    }

    func instructionSyntax(_ i: InstructionLine) throws -> InstructionSyntax {
        switch i.upper {
        case "RUN": return InstructionSyntax(flags: ["target", "network", "mount"]) { a, _ in .run(try runCommand(a)) }
        case "COPY": return InstructionSyntax(flags: ["target", "chown", "chmod", "link", "from"]) { a, state in try parseCopy(a, state: state) }
        case "ADD": return InstructionSyntax(flags: ["target", "chown", "chmod", "link", "checksum", "keep-git-dir"]) { a, state in try parseCopy(a, state: state) }
        case "HEALTHCHECK":
            return InstructionSyntax(flags: Set(RecipeParser.healthDurations + ["retries"])) { a, _ in try parseHealthcheck(a) }
        case "ONBUILD": return InstructionSyntax { a, _ in try parseOnBuild(a) }
        case "ENV": return InstructionSyntax { a, state in try parseEnv(a, state: &state) }
        case "LABEL": return InstructionSyntax { a, state in .label(try keyValues(a, state: state)) }
        case "MAINTAINER": return InstructionSyntax { a, _ in .label([KeyValue("maintainer", a.body.trimmingCharacters(in: .whitespaces))]) }
        case "ARG": return InstructionSyntax { a, state in try parseArg(a, state: &state) }
        case "WORKDIR": return InstructionSyntax { a, state in try parseWorkdir(a, state: &state) }
        case "USER": return InstructionSyntax { a, state in .user(try substitutedBody(a, state: state)) }
        // `CMD []` and `ENTRYPOINT []` clear what the base image set, as in docker.
        case "CMD": return InstructionSyntax { a, _ in .cmd(try command(a, emptyExec: true)) }
        case "ENTRYPOINT": return InstructionSyntax { a, _ in .entrypoint(try command(a, emptyExec: true)) }
        case "EXPOSE": return InstructionSyntax { a, state in try parseExpose(a, state: state) }
        case "VOLUME": return InstructionSyntax { a, state in .volume(try jsonArray(a.body) ?? substitutedWords(a, state: state)) }
        case "SHELL": return InstructionSyntax(needsBody: false) { a, state in try parseShell(a, state: &state) }
        case "STOPSIGNAL": return InstructionSyntax { a, state in .stopSignal(try substitutedBody(a, state: state)) }
        default:
            throw RecipeError(i.location, "unknown instruction '\(i.keyword)'")
        }
    }

    /// Reads the flags, `--name=value` before the arguments: only the `allowed` ones, each with a
    /// value; `--target` must name a build.
    func arguments(_ i: InstructionLine, allowed: Set<String>, needsBody: Bool) throws -> Arguments {
        var a = Arguments(instruction: i, body: i.args, offset: i.argsOffset)
        var targetLocation: SourceLocation?
        while a.body.hasPrefix("--") {
            let flag = String(a.body.prefix { !$0.isWhitespace })
            let flagLoc = location(i.line, a.offset)
            let parts = flag.dropFirst(2).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let name = parts[0]
            // `--` alone ends the flags, as in Docker's: what follows is the body, even `--x`.
            if flag == "--" {
                a.skip(flag.count)
                break
            }
            guard !name.isEmpty else { throw RecipeError(flagLoc, "'\(flag)' is not a flag (--NAME=VALUE)") }
            guard allowed.contains(name) else {
                throw RecipeError(flagLoc, "\(i.upper) does not take --\(name)" + (allowed.isEmpty ? "" : " (it takes \(allowed.sorted().map { "--" + $0 }.joined(separator: ", ")))"))
            }
            // A flag without a value, `--link`, is true.
            let value = parts.count == 1 && RecipeParser.booleanFlags.contains(name) ? "true" : parts.count == 2 ? parts[1] : ""
            guard !value.isEmpty else { throw RecipeError(flagLoc, "--\(name) needs a value (--\(name)=VALUE)") }
            a.flags[name] = RecipeParser.repeatableFlags.contains(name) ? (a.flags[name].map { $0 + " " } ?? "") + value : value
            a.repeated[name, default: []].append((value, flagLoc))
            if name == "target" { targetLocation = flagLoc }
            a.skip(flag.count)
        }
        if let note = i.line.note {
            targetLocation = try merge(note, into: &a, allowed: allowed) ?? targetLocation
        }
        a.target = try stepTarget(a.flags["target"], at: targetLocation ?? i.location)
        if needsBody && a.body.trimmingCharacters(in: .whitespaces).isEmpty { throw RecipeError(i.location, "\(i.upper) needs arguments") }
        return a
    }

    /// `COPY --from=`: an earlier stage, by name or number; with `image`, nil for a name no
    /// earlier stage has (an image), else that is an error.
    func copySource(_ name: String, at loc: SourceLocation, state: State, flag: String = "COPY --from", image: Bool = false) throws -> Int? {
        let current = state.stageNames.count - 1
        if let n = Int(name) {
            guard n >= 0 && n < current else { throw RecipeError(loc, "\(flag)=\(n): no earlier stage has that number (this is stage \(current))") }
            return n
        }
        if let i = state.stageNames.firstIndex(of: name.lowercased()) {
            guard i < current else { throw RecipeError(loc, "\(flag)=\(name): that is this stage; only an earlier one can be read") }
            return i
        }
        guard image else { throw RecipeError(loc, "\(flag)=\(name): no earlier stage of that name (an image is not supported here: only this recipe's stages)") }
        return nil
    }

    /// The build a step is for: `--target=` (or `# imgbench: target=`), both when not given.
    func stepTarget(_ value: String?, at loc: SourceLocation) throws -> StepTarget {
        guard let value else { return .both }
        guard let t = StepTarget(rawValue: value) else { throw RecipeError(loc, "--target must be container, vm or both, not '\(value)'") }
        return t
    }

    // MARK: - Handlers

    /// COPY and ADD: sources and a destination (relative to WORKDIR); ADD takes no URL.
    func parseCopy(_ a: Arguments, state: State) throws -> Step.Instruction {
        var paths = try jsonArray(a.body) ?? substitutedWords(a, state: state)
        let heredocs = a.line.heredocs.count
        // The `<<NAME` words are the here-documents, not context paths (`inlineFiles`).
        if heredocs > 0 {
            if let last = paths.last, RecipeParser.isHeredocWord(last) {
                throw RecipeError(a.location, "\(a.upper) cannot take a here-document as its destination")
            }
            paths.removeAll { RecipeParser.isHeredocWord($0) }
        }
        guard paths.count + heredocs >= 2, !paths.isEmpty else { throw RecipeError(a.location, "\(a.upper) needs at least one source and a destination") }
        // ADD of a URL or a git repository: fetched when the step runs (`RemoteSource`).
        let remote = a.upper == "ADD" ? paths.dropLast().compactMap(RemoteSource.init) : []
        if let sum = a.flags["checksum"] {
            guard remote.count == 1, case .http = remote[0], paths.count == 2 else {
                throw RecipeError(a.location, "ADD --checksum applies to one http(s) source")
            }
            guard sum.hasPrefix("sha256:"), sum.count == 71, sum.dropFirst(7).allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw RecipeError(a.location, "ADD --checksum=\(sum): give sha256:HEX (64 lowercase hex digits)")
            }
        }
        if let keep = a.flags["keep-git-dir"], keep != "true" && keep != "false" {
            throw RecipeError(a.location, "--keep-git-dir must be true or false, not '\(keep)'")
        }
        for p in paths.dropLast() where a.upper == "ADD" && RemoteSource(p) == nil && p.contains("://") {
            throw RecipeError(a.location, "ADD \(p): only http(s) URLs and git repositories are fetched")
        }
        let dest = paths.removeLast()
        let resolvedDest = dest.hasPrefix("/") ? dest : LexicalPath.join(state.workdir, dest) + (dest.hasSuffix("/") ? "/" : "")
        if let link = a.flags["link"], link != "true" && link != "false" {
            throw RecipeError(a.location, "--link must be true or false, not '\(link)'")
        }
        if let chmod = a.flags["chmod"], UInt32(chmod, radix: 8) == nil || chmod.count > 4 {
            throw RecipeError(a.location, "--chmod=\(chmod) is not an octal mode")
        }
        return a.upper == "COPY"
            ? .copy(sources: paths, destination: resolvedDest, chown: a.flags["chown"], chmod: a.flags["chmod"])
            : .add(sources: paths, destination: resolvedDest, chown: a.flags["chown"], chmod: a.flags["chmod"])
    }

    func parseEnv(_ a: Arguments, state: inout State) throws -> Step.Instruction {
        let pairs = try keyValues(a, state: state)
        for p in pairs { try state.setEnv(p, at: a.location) }
        return .env(pairs)
    }

    func parseArg(_ a: Arguments, state: inout State) throws -> Step.Instruction {
        try state.arg(a.body, loc: a.location, global: false, parser: self, line: a.line, offset: a.offset)
        let name = String(a.body.prefix { $0 != "=" && !$0.isWhitespace })
        return .arg(name: name, value: state.args.first { $0.key == name }?.value)
    }

    func parseWorkdir(_ a: Arguments, state: inout State) throws -> Step.Instruction {
        let dir = try substitutedBody(a, state: state)
        state.workdir = dir.hasPrefix("/") ? LexicalPath.join("/", dir) : LexicalPath.join(state.workdir, dir)
        return .workdir(state.workdir)
    }

    /// EXPOSE: ports as PORT[-PORT][/tcp|udp|sctp], tcp when no protocol is named.
    func parseExpose(_ a: Arguments, state: State) throws -> Step.Instruction {
        var ports: [String] = []
        for w in try words(a.body, line: a.line, offset: a.offset, escape: state.escape) {
            let p = try substitute(w.text, state.variables, line: a.line, offset: w.offset)
            // Empty pieces kept: a port that substitutes to nothing is refused, not an empty list (a trap).
            let parts = p.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            let proto = parts.count == 2 ? parts[1].lowercased() : "tcp"
            let range = parts[0].split(separator: "-")
            guard !range.isEmpty, range.count <= 2, range.allSatisfy({ UInt16($0) != nil }), ["tcp", "udp", "sctp"].contains(proto) else {
                throw RecipeError(location(a.line, w.offset), "'\(p)' is not a port (PORT[/tcp|udp|sctp])")
            }
            ports.append("\(parts[0])/\(proto)")
        }
        return .expose(ports)
    }

    func parseShell(_ a: Arguments, state: inout State) throws -> Step.Instruction {
        guard let shell = jsonArray(a.body), !shell.isEmpty else {
            throw RecipeError(a.location, "SHELL needs the exec (JSON array) form, e.g. SHELL [\"/bin/bash\", \"-c\"]")
        }
        state.shell = shell
        return .shell(shell)
    }

    // MARK: - Argument forms

    /// The arguments as one value, trimmed and substituted (WORKDIR, USER, STOPSIGNAL).
    func substitutedBody(_ a: Arguments, state: State) throws -> String {
        try substitute(a.body.trimmingCharacters(in: .whitespaces), state.variables, line: a.line, offset: a.offset)
    }

    /// The arguments as words, each substituted (COPY, ADD and VOLUME in shell form).
    func substitutedWords(_ a: Arguments, state: State) throws -> [String] {
        try words(a.body, line: a.line, offset: a.offset, escape: state.escape).map {
            try substitute($0.text, state.variables, line: a.line, offset: $0.offset)
        }
    }

    /// RUN, CMD and ENTRYPOINT: exec form (a JSON array) or shell form; `emptyExec`: `[]` is
    /// allowed (CMD and ENTRYPOINT, which it clears).
    func command(_ a: Arguments, emptyExec: Bool = false) throws -> CommandForm {
        if let exec = jsonArray(a.body) {
            guard !exec.isEmpty || emptyExec else { throw RecipeError(location(a.line, a.offset), "the exec form needs at least one element") }
            return .exec(exec)
        }
        return .shell(a.body.trimmingCharacters(in: .whitespaces))
    }

    /// A JSON array of strings, or nil when the text is not one (then it is shell form).
    func jsonArray(_ body: String) -> [String]? {
        let t = body.trimmingCharacters(in: .whitespaces)
        guard t.hasPrefix("["), t.hasSuffix("]") else { return nil }
        return try? JSONDecoder().decode([String].self, from: Data(t.utf8))
    }

    /// ENV and LABEL: KEY=VALUE pairs, values substituted with the variables in force before the
    /// instruction; ENV also takes the old form `ENV KEY value with spaces`.
    func keyValues(_ a: Arguments, state: State) throws -> [KeyValue] {
        let (keyword, body, line, offset) = (a.upper, a.body, a.line, a.offset)
        let vars = state.variables
        let ws = try words(body, line: line, offset: offset, escape: state.escape)
        guard let first = ws.first else { throw RecipeError(location(line, offset), "\(keyword) needs KEY=VALUE") }
        // The older `ENV KEY value with spaces` (and `LABEL key value`, which BuildKit reads alike).
        if !first.text.contains("=") {
            guard keyword == "ENV" || keyword == "LABEL", ws.count >= 2 else {
                throw RecipeError(location(line, first.offset), "\(keyword) needs KEY=VALUE, found '\(first.text)'")
            }
            let valueStart = body.index(body.startIndex, offsetBy: first.end - offset)
            let raw = body[valueStart...].trimmingCharacters(in: .whitespaces)
            return [KeyValue(first.text, try substitute(raw, vars, line: line, offset: first.end))]
        }
        return try ws.map { w in
            guard let eq = w.text.firstIndex(of: "="), eq != w.text.startIndex else {
                throw RecipeError(location(line, w.offset), "\(keyword) needs KEY=VALUE, found '\(w.text)'")
            }
            let key = String(w.text[..<eq])
            if keyword == "ENV" && !RecipeParser.isName(key) {
                throw RecipeError(location(line, w.offset), "'\(key)' is not a valid variable name")
            }
            let value = try substitute(String(w.text[w.text.index(after: eq)...]), vars, line: line, offset: w.offset + key.count + 1)
            return KeyValue(key, value)
        }
    }
}
