import Foundation
import Yams

/// What is refused of a budget's text before the YAML parser sees it: the parser recurses once
/// per level of nesting and a deep enough file overflows its stack (3000 nested mappings, 100k
/// `[`), so the text's size and nesting are bounded first, with the line where they break.
enum BudgetText {
    /// A budget file's text; an unreadable file is named.
    static func read(_ path: String) throws -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw GateError.unreadable(path: path, message: "cannot read the budget: \((error as NSError).localizedDescription)")
        }
    }

    /// The YAML of a budget's text, checked first (`check`); nil for an empty file.
    static func compose(_ text: String, file: String) throws -> Node? {
        try check(text, file: file)
        do {
            return try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw GateError.invalid(place: "\(file):\(e.description.split(separator: "\n").first ?? "")", message: "not YAML")
        }
    }

    /// A budget is a few kilobytes; a megabyte is not one.
    static let maxBytes = 1 << 20
    /// A budget nests six levels (recipes, a recipe, steps, a step, a figure, a limit).
    static let maxDepth = 32

    static func check(_ text: String, file: String) throws {
        guard text.utf8.count <= maxBytes else {
            throw GateError.invalid(place: file, message: "the budget is \(text.utf8.count) bytes, more than a budget can be (\(maxBytes))")
        }
        var indents: [Int] = []
        var flow = 0
        var number = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let body = line.drop { $0 == " " }
            let indent = line.count - body.count
            if flow == 0, !body.isEmpty, !body.hasPrefix("#") {
                while let last = indents.last, last >= indent { indents.removeLast() }
                indents.append(indent)
            }
            let depth = indents.count + flowDepth(body, start: &flow) + indicators(body)
            guard depth <= maxDepth else {
                throw GateError.invalid(place: "\(file):\(number)", message: "nested more than \(maxDepth) levels deep; a budget needs six")
            }
        }
    }

    /// Block collections begun on the line itself (`- - - x`, `? ? x`).
    static func indicators(_ body: Substring) -> Int {
        var n = 0
        var rest = body
        while let c = rest.first, c == "-" || c == "?", rest.dropFirst().first == " " {
            n += 1
            rest = rest.dropFirst(2).drop { $0 == " " }
        }
        return n
    }

    /// The deepest flow nesting (`[`, `{`) reached on the line, carrying `start` over to the
    /// next line; quoted text and comments are skipped.
    static func flowDepth(_ body: Substring, start flow: inout Int) -> Int {
        var deepest = flow
        var quote: Character?
        var previous: Character = " "
        var escaped = false
        for c in body {
            if let q = quote {
                if escaped { escaped = false } else if c == "\\" && q == "\"" { escaped = true } else if c == q { quote = nil }
            } else if (c == "\"" || c == "'") && " \t[{,:".contains(previous) {
                quote = c
            } else if c == "#" && (previous == " " || previous == "\t") {
                break
            } else if c == "[" || c == "{" {
                flow += 1
                deepest = max(deepest, flow)
            } else if c == "]" || c == "}" {
                flow = max(0, flow - 1)
            }
            previous = c
        }
        return deepest
    }
}
