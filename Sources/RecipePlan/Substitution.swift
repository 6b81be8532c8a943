import Foundation

// Words and substitution: how an instruction's arguments split into words, and how `$V`, `${V}`,
// `${V:-word}` and the like expand.
extension RecipeParser {
    /// A variable name: a letter or `_`, then letters, digits and `_`.
    public static func isName(_ s: String) -> Bool {
        guard let f = s.first, f.isLetter || f == "_" else { return false }
        return s.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" }
    }

    struct Word {
        var text: String
        /// Where the word starts and ends in the logical line.
        var offset: Int
        var end: Int
    }

    /// Splits on unquoted whitespace; quotes are removed and keep their content whole, the escape
    /// character escapes the next character. `$` is left for substitution; inside single quotes it
    /// is escaped so that substitution leaves it alone.
    func words(_ s: String, line: LogicalLine, offset: Int, escape: Character) throws -> [Word] {
        var out: [Word] = []
        var cur = ""
        var start: Int?
        var quote: Character?
        var quoteStart = 0
        let chars = Array(s)
        // Past the last `}` no `${` closes: not searched for again (a line of `${` would
        // otherwise be read over once for each).
        let lastClose = chars.lastIndex(of: "}") ?? -1
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if let q = quote {
                if c == q {
                    quote = nil
                } else if c == escape && q == "\"" && i + 1 < chars.count && (chars[i + 1] == "\"" || chars[i + 1] == escape || chars[i + 1] == "$") {
                    cur.append(chars[i + 1] == "$" ? "\u{1}" : chars[i + 1])
                    i += 1
                } else if c == "$" && q == "'" {
                    cur.append("\u{1}")
                } else {
                    cur.append(c)
                }
            } else if c == " " || c == "\t" {
                if let st = start {
                    out.append(Word(text: cur, offset: offset + st, end: offset + i))
                    cur = ""
                    start = nil
                }
            } else {
                if start == nil { start = i }
                if c == "\"" || c == "'" {
                    quote = c
                    quoteStart = i
                } else if c == escape && i + 1 < chars.count {
                    cur.append(chars[i + 1] == "$" ? "\u{1}" : chars[i + 1])
                    i += 1
                } else if c == "$", i + 1 < chars.count, chars[i + 1] == "{", i < lastClose, let close = chars[i...].firstIndex(of: "}") {
                    // ${...} is one piece of a word, spaces and all.
                    cur += String(chars[i...close])
                    i = close
                } else {
                    cur.append(c)
                }
            }
            i += 1
        }
        if quote != nil { throw RecipeError(location(line, offset + quoteStart), "unterminated quote") }
        if let st = start { out.append(Word(text: cur, offset: offset + st, end: offset + chars.count)) }
        return out
    }

    /// Expands `$V`, `${V}` and the `${V:-w}`, `${V:+w}`, `${V-w}`, `${V+w}`, `${V:?msg}`,
    /// `${V?msg}` forms. A `\u{1}` marks a `$` that was escaped or single-quoted.
    func substitute(_ s: String, _ vars: [String: String], line: LogicalLine, offset: Int) throws -> String {
        var out = ""
        let chars = Array(s)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "\u{1}" { out.append("$"); i += 1; continue }
            guard c == "$", i + 1 < chars.count else { out.append(c); i += 1; continue }
            if chars[i + 1] == "{" {
                guard let close = chars[(i + 2)...].firstIndex(of: "}") else {
                    throw RecipeError(location(line, offset + i), "unterminated ${ in '\(s.count > 80 ? s.prefix(80) + "..." : s)'")
                }
                let inner = String(chars[(i + 2)..<close])
                let name = String(inner.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
                guard RecipeParser.isName(name) else { throw RecipeError(location(line, offset + i), "bad substitution '${\(inner)}'") }
                let op = inner.dropFirst(name.count)
                let value = vars[name]
                if op.isEmpty {
                    out += value ?? ""
                } else {
                    let colon = op.hasPrefix(":")
                    let rest = op.dropFirst(colon ? 1 : 0)
                    guard let kind = rest.first, "-+?".contains(kind) else {
                        throw RecipeError(location(line, offset + i), "bad substitution '${\(inner)}' (supported: :- :+ - + :? ?)")
                    }
                    let word = try substitute(String(rest.dropFirst()), vars, line: line, offset: offset + i)
                    let isSet = colon ? !(value ?? "").isEmpty : value != nil
                    switch kind {
                    case "-": out += isSet ? value! : word
                    case "+": out += isSet ? word : ""
                    default:
                        guard isSet else { throw RecipeError(location(line, offset + i), "\(name): \(word.isEmpty ? "is not set" : word)") }
                        out += value!
                    }
                }
                i = close + 1
            } else if chars[i + 1].isLetter || chars[i + 1] == "_" {
                var j = i + 1
                while j < chars.count, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" { j += 1 }
                out += vars[String(chars[(i + 1)..<j])] ?? ""
                i = j
            } else {
                out.append(c)
                i += 1
            }
            guard out.utf8.count <= limits.expandedWordBytes else {
                throw RecipeError(location(line, offset), "the value grows past \(limits.expandedWordBytes) bytes as ARG and ENV values are substituted")
            }
        }
        return out
    }
}
