import Foundation

// Logical lines: the physical lines after the directives, with continuations joined and comments
// left out, each character keeping its place for the error messages.
extension RecipeParser {
    /// One instruction's text with continuations joined, and where each character came from.
    struct LogicalLine {
        var text: [Character] = []
        var positions: [(line: Int, column: Int)] = []
        var startLine = 0

        var string: String { String(text) }

        var isBlank: Bool { string.trimmingCharacters(in: .whitespaces).isEmpty }

        /// Adds physical line `number`, without the escape character that ends it (trailing
        /// whitespace after it still continues the line); true when the next line continues this one.
        mutating func append(_ line: [Character], number: Int, escape: Character) -> Bool {
            var end = line.count
            while end > 0, line[end - 1] == " " || line[end - 1] == "\t" { end -= 1 }
            let continues = end > 0 && line[end - 1] == escape
            let kept = continues ? line[0..<(end - 1)] : line[...]
            for (col, c) in kept.enumerated() {
                text.append(c)
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

    /// The recipe's physical lines, without their line ends (`\n` or `\r\n`).
    static func physicalLines(_ text: String) -> [Substring] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            line.hasSuffix("\r") ? line.dropLast() : line
        }
    }

    /// Joins the physical lines from index `first` on into logical lines: a line ending in the
    /// escape character goes on in the next; comments, also inside a continuation, and blank
    /// lines are left out.
    func logicalLines(_ physical: [Substring], from first: Int, escape: Character) throws -> [LogicalLine] {
        var lines: [LogicalLine] = []
        var current: LogicalLine?
        for n in first..<physical.count {
            let line = Array(physical[n])
            let trimmed = String(line).trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") {
                try refuseLateDirective(trimmed, number: n + 1)
                continue
            }
            if trimmed.isEmpty && current == nil { continue }
            var l = current ?? LogicalLine(startLine: n + 1)
            if l.append(line, number: n + 1, escape: escape) {
                current = l
            } else {
                current = nil
                if !l.isBlank { lines.append(l) }
            }
        }
        if let l = current, !l.isBlank { lines.append(l) }
        return lines
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
