import Foundation

// `# imgbench: target=vm`: imgbench's settings of one step as a comment on the line before it,
// which docker reads as a comment, so the recipe stays one that docker builds. The flags
// `--target=` and `--network=` say the same thing in imgbench's older spelling.
extension RecipeParser {
    /// The settings of a `# imgbench:` comment and where each stands.
    struct StepNote {
        var flags: [String: String] = [:]
        var locations: [String: SourceLocation] = [:]
    }

    /// The settings a `# imgbench:` note takes.
    static let noteKeys: Set<String> = ["target", "network"]

    /// The note a comment line holds, or nil when it is another comment. `# imgbench:` followed by
    /// `key=value` words; an unknown key or a word without `=` is refused at its column.
    func stepNote(_ line: Substring, number: Int) throws -> StepNote? {
        guard let hash = line.firstIndex(of: "#") else { return nil }
        let body = line[line.index(after: hash)...].drop { $0 == " " || $0 == "\t" }
        guard body.lowercased().hasPrefix("imgbench:") else { return nil }
        let column = { (word: Substring) in line.distance(from: line.startIndex, to: word.startIndex) + 1 }
        var note = StepNote()
        for word in body.dropFirst("imgbench:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            let at = SourceLocation(file: file, line: number, column: column(word))
            let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, RecipeParser.noteKeys.contains(parts[0]) else {
                throw RecipeError(at, "'\(word)' is not an imgbench step setting (target=container|vm|both, network=default|none|host)")
            }
            note.flags[parts[0]] = parts[1]
            note.locations[parts[0]] = at
        }
        guard !note.flags.isEmpty else {
            throw RecipeError(SourceLocation(file: file, line: number, column: column(body)), "'# imgbench:' needs a setting, e.g. '# imgbench: target=vm'")
        }
        return note
    }
}

extension RecipeParser {
    /// Flags written without a value: `--link` is `--link=true`.
    static let booleanFlags: Set<String> = ["link", "keep-git-dir"]

    /// Flags that may be given more than once: each value is kept (`Arguments.repeated`).
    static let repeatableFlags: Set<String> = ["mount"]

    /// Adds a note's settings to the instruction's flags: one the instruction does not take, or
    /// one given as a flag too, is refused at the note. Gives where a `target=` stands.
    func merge(_ note: StepNote, into a: inout Arguments, allowed: Set<String>) throws -> SourceLocation? {
        for (key, value) in note.flags.sorted(by: { $0.key < $1.key }) {
            let at = note.locations[key]!
            guard allowed.contains(key) else {
                throw RecipeError(at, "'# imgbench: \(key)=' is for RUN" + (key == "target" ? ", COPY and ADD" : "") + ", not \(a.upper)")
            }
            guard a.flags[key] == nil else { throw RecipeError(at, "\(key) is given both here and as --\(key)= on the next line") }
            a.flags[key] = value
        }
        return note.locations["target"]
    }
}
