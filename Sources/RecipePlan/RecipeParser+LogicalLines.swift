import Foundation

// Logical lines: the physical lines after the directives, with continuations joined and comments
// left out, each character keeping its place for the error messages.
extension RecipeParser {
    /// One instruction's text with continuations joined, and where each character came from.
    struct LogicalLine {
        var text: [Character] = []
        var positions: [(line: Int, column: Int)] = []
        var startLine = 0
        /// A `# imgbench:` note on the line before the instruction.
        var note: StepNote?
        /// UTF-8 bytes of `text` and of the here-documents.
        var bytes = 0
        /// The here-documents read from the lines after the instruction.
        var heredocs: [Heredoc] = []

        var string: String { String(text) }

        var isBlank: Bool { string.trimmingCharacters(in: .whitespaces).isEmpty }

        /// Adds physical line `number`, without the escape character that ends it (trailing
        /// whitespace after it still continues the line); true when the next line continues this one.
        mutating func append(_ line: [Character], number: Int, escape: Character) -> Bool {
            var end = line.count
            while end > 0, line[end - 1] == " " || line[end - 1] == "\t" { end -= 1 }
            let continues = end > 0 && line[end - 1] == escape && (end == 1 || line[end - 2] != escape)
            let kept = continues ? line[0..<(end - 1)] : line[...]
            for (col, c) in kept.enumerated() {
                text.append(c)
                bytes += c.utf8.count
                positions.append((number, col + 1))
            }
            return continues
        }
    }

    func location(_ l: LogicalLine, _ offset: Int) -> SourceLocation {
        if l.positions.isEmpty { return SourceLocation(file: file, line: l.startLine, column: 1) }
        let p = l.positions[min(max(offset, 0), l.positions.count - 1)]
        return SourceLocation(file: file, line: p.line, column: p.column + (offset >= l.positions.count ? 1 : 0))
    }

    /// The recipe's physical lines, without their line ends: `\n`, `\r\n` (one Character in
    /// Swift, so splitting on `\n` alone leaves a CRLF file one line), and a lone `\r` before
    /// the end of the text.
    static func physicalLines(_ text: String) -> [Substring] {
        // A byte-order mark before the first line is not part of it.
        let text = text.hasPrefix("\u{FEFF}") ? String(text.dropFirst()) : text
        return text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }.map { line -> Substring in
            line.hasSuffix("\r") ? line.dropLast() : line
        }
    }

    /// Refuses a physical line longer than the limit, where it passes it.
    func refuseLongLines(_ physical: [Substring]) throws {
        for (n, line) in physical.enumerated() where line.utf8.count > limits.lineBytes {
            throw RecipeError(SourceLocation(file: file, line: n + 1, column: 1),
                              "the line is \(line.utf8.count) bytes long, more than a recipe line can be (\(limits.lineBytes))")
        }
    }

    /// Joins the physical lines from index `first` on into logical lines, as BuildKit does: a
    /// line ending in the escape character goes on in the next (not after an escaped escape,
    /// `\\` at the end); comments and blank lines, also inside a continuation, are left out; a RUN, COPY
    /// or ADD takes its here-documents from the lines after it. A `# imgbench:` note goes with
    /// the instruction on the next line.
    func logicalLines(_ physical: [Substring], from first: Int, escape: Character) throws -> [LogicalLine] {
        var lines: [LogicalLine] = []
        var current: LogicalLine?
        var note: StepNote?
        var n = first
        while n < physical.count {
            let line = Array(physical[n])
            n += 1
            let trimmed = String(line).trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") {
                try refuseLateDirective(trimmed, number: n)
                if current == nil, let found = try stepNote(physical[n - 1], number: n) { note = found }
                continue
            }
            if trimmed.isEmpty {
                if current == nil { note = nil }
                continue
            }
            // Taken out of `current`, so that appending does not copy what it holds so far.
            var l = current.take() ?? LogicalLine(startLine: n, note: note.take())
            let continues = l.append(line, number: n, escape: escape)
            try checkSize(l, upTo: n)
            if continues {
                current = l
            } else if !l.isBlank {
                n = try readHeredocs(into: &l, physical, from: n)
                lines.append(l)
            }
        }
        if let l = current, !l.isBlank { lines.append(l) }
        return lines
    }

    /// Refuses an instruction whose lines joined (and here-documents) pass the limit.
    func checkSize(_ l: LogicalLine, upTo n: Int) throws {
        guard l.bytes <= limits.logicalLineBytes else {
            throw RecipeError(SourceLocation(file: file, line: l.startLine, column: 1),
                              "the instruction's lines joined are more than \(limits.logicalLineBytes) bytes long (up to line \(n))")
        }
    }

    /// One of imgbench's directives out of place would otherwise be silently a comment.
    func refuseLateDirective(_ comment: String, number: Int) throws {
        let body = comment.dropFirst().trimmingCharacters(in: .whitespaces).lowercased()
        if let eq = body.firstIndex(of: "="), !body[..<eq].contains(" "),
           ["vm-", "base-variant", "workloads"].contains(where: { body.hasPrefix($0) }) {
            throw RecipeError(SourceLocation(file: file, line: number, column: 1),
                              "parser directive '\(body[..<eq])' must come before any other line, comment or blank line of the recipe")
        }
    }
}
