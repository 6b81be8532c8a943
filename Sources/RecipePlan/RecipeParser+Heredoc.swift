import Foundation

// Here-documents, as the Dockerfile reference and BuildKit's parser define them: a RUN, COPY or
// ADD in shell form whose words include `<<NAME`, `<<-NAME`, `<<'NAME'` or `<<"NAME"` (several
// on a line) takes the following lines, up to a line that is NAME alone, as each document's
// content. Comments and continuations inside a document are content.
extension RecipeParser {
    /// A word of a line as BuildKit's lexer gives it with raw quotes and escapes: split on
    /// whitespace outside quotes, nothing removed.
    struct RawWord {
        var text: String
        var offset: Int
    }

    /// The delimiter a `<<` word names.
    struct HeredocMark {
        var name: String
        var expand: Bool
        var chomp: Bool
        var offset: Int
    }

    /// Reads the here-documents of a finished logical line from physical line index `next` on;
    /// gives the index after the last one.
    func readHeredocs(into l: inout LogicalLine, _ physical: [Substring], from next: Int) throws -> Int {
        var n = next
        for mark in try heredocMarks(l) {
            var content = ""
            var terminated = false
            while n < physical.count {
                let line = physical[n]
                n += 1
                let candidate = mark.chomp ? line.drop { $0 == "\t" } : line[...]
                if candidate == mark.name {
                    terminated = true
                    break
                }
                content += line + "\n"
                l.bytes += line.utf8.count + 1
                try checkSize(l, upTo: n)
            }
            guard terminated else {
                throw RecipeError(location(l, mark.offset), "unterminated here-document: no line '\(mark.name)' ends it before the end of the file")
            }
            let text = mark.chomp ? RecipeParser.chomp(content) : content
            l.heredocs.append(Heredoc(name: mark.name, content: text, expand: mark.expand, chomp: mark.chomp))
        }
        return n
    }

    /// `<<-`: the leading tabs of every line go.
    static func chomp(_ content: String) -> String {
        content.split(separator: "\n", omittingEmptySubsequences: false)
            .map { String($0.drop { $0 == "\t" }) }.joined(separator: "\n")
    }

    /// The `<<` words of a RUN, COPY or ADD in shell form; none otherwise.
    func heredocMarks(_ l: LogicalLine) throws -> [HeredocMark] {
        let i = instruction(l)
        guard ["RUN", "COPY", "ADD"].contains(i.upper) else { return [] }
        let body = RecipeParser.skipFlags(i.args)
        if body.hasPrefix("["), jsonArray(body) != nil { return [] }
        return try RecipeParser.rawWords(l.string).compactMap { try heredocMark($0, line: l) }
    }

    /// The arguments after the `--flag` words.
    static func skipFlags(_ args: String) -> String {
        var rest = Substring(args)
        while rest.hasPrefix("--") {
            rest = rest.drop { !$0.isWhitespace }.drop { $0.isWhitespace }
        }
        return String(rest)
    }

    /// Splits a line into words as a shell would, keeping quotes and escapes in them.
    static func rawWords(_ s: String) -> [RawWord] {
        var out: [RawWord] = []
        var cur = ""
        var start: Int?
        var quote: Character?
        var escaped = false
        for (i, c) in s.enumerated() {
            if start == nil, quote == nil, !escaped, c == " " || c == "\t" { continue }
            if start == nil { start = i }
            if escaped {
                escaped = false
            } else if let q = quote {
                if c == q { quote = nil } else if c == "\\" && q == "\"" { escaped = true }
            } else if c == " " || c == "\t" {
                out.append(RawWord(text: cur, offset: start!))
                cur = ""
                start = nil
                continue
            } else if c == "'" || c == "\"" {
                quote = c
            } else if c == "\\" {
                escaped = true
            }
            cur.append(c)
        }
        if let st = start { out.append(RawWord(text: cur, offset: st)) }
        return out
    }

    /// A word `[N]<<[-]NAME`: the delimiter without its quotes, and whether the content expands
    /// (no quote in the delimiter). nil for any other word.
    func heredocMark(_ w: RawWord, line: LogicalLine) throws -> HeredocMark? {
        var rest = Substring(w.text).drop { $0.isNumber }
        guard rest.hasPrefix("<<") else { return nil }
        rest = rest.dropFirst(2)
        let chomp = rest.hasPrefix("-")
        if chomp { rest = rest.dropFirst() }
        guard !rest.isEmpty, !rest.contains("<") else { return nil }
        var name = ""
        var quote: Character?
        var escaped = false
        for c in rest {
            if escaped { name.append(c); escaped = false } else if let q = quote {
                if c == q { quote = nil } else { name.append(c) }
            } else if c == "'" || c == "\"" { quote = c } else if c == "\\" { escaped = true } else { name.append(c) }
        }
        guard quote == nil else {
            throw RecipeError(location(line, w.offset), "unterminated quote in the here-document delimiter '\(w.text)'")
        }
        return HeredocMark(name: name, expand: !rest.contains("'") && !rest.contains("\""), chomp: chomp, offset: w.offset)
    }

    /// A here-document's content with ARG/ENV expanded where its delimiter was not quoted; quotes
    /// and backslashes stay as written, and `\$` keeps its dollar.
    func expanded(_ h: Heredoc, state: State, line: LogicalLine) throws -> String {
        guard h.expand else { return h.content }
        let marked = h.content.replacingOccurrences(of: "\\$", with: "\\\u{1}")
        return try substitute(marked, state.variables, line: line, offset: 0)
    }
}

// What a RUN, COPY or ADD makes of its here-documents.
extension RecipeParser {
    /// `<<NAME`, `<<-NAME`, `2<<NAME` as a word of its own (quotes already removed).
    static func isHeredocWord(_ w: String) -> Bool {
        var rest = Substring(w).drop { $0.isNumber }
        guard rest.hasPrefix("<<") else { return false }
        rest = rest.dropFirst(2)
        if rest.hasPrefix("-") { rest = rest.dropFirst() }
        return !rest.isEmpty && !rest.contains("<")
    }

    /// RUN: a command that is one here-document alone runs its content as the shell's script (a
    /// content starting with `#!` runs with that interpreter, as a file); otherwise the shell
    /// reads the documents itself, after the command line, each ended by its delimiter.
    func runCommand(_ a: Arguments) throws -> CommandForm {
        let form = try command(a)
        let docs = a.line.heredocs
        guard case let .shell(line) = form, !docs.isEmpty else { return form }
        if docs.count == 1, RecipeParser.rawWords(line).count == 1, RecipeParser.isHeredocWord(line) {
            return .shell(docs[0].content.hasPrefix("#!") ? RecipeParser.shebangScript(docs[0]) : docs[0].content)
        }
        return .shell(([line] + docs.map { $0.content + $0.name }).joined(separator: "\n"))
    }

    /// A `#!` document: written to /dev/shm (a tmpfs of the step's sandbox: in no layer and no
    /// disk block) and run by its interpreter, as the kernel would run it.
    static func shebangScript(_ doc: Heredoc) -> String {
        let first = doc.content.prefix { $0 != "\n" }.dropFirst(2).trimmingCharacters(in: .whitespaces)
        let interpreter = first.split(maxSplits: 1, whereSeparator: { $0 == " " || $0 == "\t" }).map { shellQuote(String($0)) }
        guard !interpreter.isEmpty else { return doc.content }
        var terminator = "IMGBENCH_HEREDOC"
        let lines = Set(doc.content.split(separator: "\n").map(String.init))
        while lines.contains(terminator) { terminator += "_" }
        let file = shellQuote("/dev/shm/imgbench-heredoc-\(doc.name.replacingOccurrences(of: "/", with: "_"))")
        return "cat > \(file) <<'\(terminator)'\n\(doc.content)\(terminator)\nexec \(interpreter.joined(separator: " ")) \(file)\n"
    }

    static func shellQuote(_ s: String) -> String {
        "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// COPY and ADD: the files their here-documents write, named by the delimiter, content
    /// expanded where the delimiter was not quoted.
    func inlineFiles(_ a: Arguments, state: State) throws -> [InlineFile] {
        guard a.upper == "COPY" || a.upper == "ADD" else { return [] }
        return try a.line.heredocs.map { h in
            guard !h.name.contains("/"), h.name != ".", h.name != ".." else {
                throw RecipeError(a.location, "here-document '\(h.name)' cannot name a file of \(a.upper) (no '/', '.' or '..')")
            }
            return InlineFile(name: h.name, content: try expanded(h, state: state, line: a.line))
        }
    }
}
