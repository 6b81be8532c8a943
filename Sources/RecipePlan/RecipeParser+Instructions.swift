import Foundation
import Host

// The instructions after FROM.
extension RecipeParser {
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
