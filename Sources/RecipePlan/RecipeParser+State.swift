import Foundation

extension RecipeParser {
    /// Variables in force while parsing: ARG values, ENV values, the shell, the working directory.
    struct State {
        var buildArgs: [String: String]
        var escape: Character
        var limits: RecipeLimits
        var globalArgs: [String: String] = [:]
        /// The ARGs before FROM as declared, for the plan.
        var globalDeclared: [GlobalArg] = []
        private(set) var args: [KeyValue] = []
        private(set) var env: [KeyValue] = []
        /// What substitution sees: ENV wins over ARG, as in Containerfiles. Kept as they are set,
        /// not made again for every instruction.
        private(set) var variables: [String: String] = [:]
        private var envValues: [String: String] = [:]
        private var argValues: [String: String] = [:]
        /// Bytes of the names and values of `env`, `args` and `globalArgs`.
        private var bytes = 0
        var workdir = "/"
        var shell = ["/bin/sh", "-c"]

        init(buildArgs: [String: String], escape: Character, limits: RecipeLimits) {
            self.buildArgs = buildArgs
            self.escape = escape
            self.limits = limits
        }

        /// What FROM substitutes: the global ARGs over BuildKit's platform ARGs.
        var fromVariables: [String: String] { RecipeParser.platformArgs.merging(globalArgs) { $1 } }

        /// The names of the stages so far (lowercased; nil for a stage without one), in order.
        var stageNames: [String?] = []

        /// What a stage hands on to a stage built FROM it: its image config's ENV, WORKDIR and SHELL.
        struct StageEnd {
            var env: [KeyValue]
            var workdir: String
            var shell: [String]
        }

        /// Each finished stage's end, in order (`FROM STAGE` starts from it).
        var stageEnds: [StageEnd] = []

        /// Records the end of the stage being parsed, if one is.
        mutating func endStage() {
            if stageEnds.count < stageNames.count { stageEnds.append(StageEnd(env: env, workdir: workdir, shell: shell)) }
        }

        /// A stage starts afresh: no ARG of an earlier stage; the ENV, WORKDIR and SHELL of the stage
        /// it is built FROM (`inheriting`), else none, `/` and the default shell.
        mutating func enterStage(inheriting parent: StageEnd? = nil) {
            args = []
            argValues = [:]
            env = parent?.env ?? []
            envValues = Dictionary(env.map { ($0.key, $0.value) }) { $1 }
            variables = envValues
            workdir = parent?.workdir ?? "/"
            shell = parent?.shell ?? ["/bin/sh", "-c"]
            bytes = (env + globalArgs.map { KeyValue($0.key, $0.value) }).reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        }

        mutating func setEnv(_ kv: KeyValue, at loc: SourceLocation) throws {
            try account(kv, replacing: envValues[kv.key], at: loc)
            State.set(&env, kv, existed: envValues.updateValue(kv.value, forKey: kv.key) != nil)
            variables[kv.key] = kv.value
        }

        mutating func setArg(_ kv: KeyValue, at loc: SourceLocation) throws {
            try account(kv, replacing: argValues[kv.key], at: loc)
            State.set(&args, kv, existed: argValues.updateValue(kv.value, forKey: kv.key) != nil)
            if envValues[kv.key] == nil { variables[kv.key] = kv.value }
        }

        /// Counts a variable set, refusing more of them, or more bytes, than a recipe may hold.
        private mutating func account(_ kv: KeyValue, replacing old: String?, at loc: SourceLocation) throws {
            bytes += kv.value.utf8.count - (old.map { $0.utf8.count } ?? -kv.key.utf8.count)
            guard bytes <= limits.environmentBytes else {
                throw RecipeError(loc, "ENV and ARG values in force come to more than \(limits.environmentBytes) bytes")
            }
            guard old != nil || env.count + args.count + globalArgs.count < limits.variables else {
                throw RecipeError(loc, "more than \(limits.variables) ENV and ARG variables in force")
            }
        }

        static func set(_ list: inout [KeyValue], _ kv: KeyValue, existed: Bool) {
            if existed { list.removeAll { $0.key == kv.key } }
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
                let resolved = buildArgs[name] ?? value ?? (global ? nil : globalArgs[name]) ?? RecipeParser.platformArgs[name]
                if global {
                    globalDeclared.append(GlobalArg(name: name, value: resolved, location: parser.location(line, w.offset)))
                    if let r = resolved {
                        try account(KeyValue(name, r), replacing: globalArgs[name], at: parser.location(line, w.offset))
                        globalArgs[name] = r
                    }
                } else if let r = resolved {
                    try setArg(KeyValue(name, r), at: parser.location(line, w.offset))
                }
            }
        }
    }
}
