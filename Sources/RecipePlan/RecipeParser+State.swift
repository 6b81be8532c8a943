import Foundation

extension RecipeParser {
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
}
