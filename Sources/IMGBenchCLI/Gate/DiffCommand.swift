import ArgumentParser
import Foundation
import Gate
import ImageBuild

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "What changed between two builds of a recipe: files per step and Debian packages, on the container side.",
        discussion: """
            OLD and NEW are build output folders (out/NAME, with report.json and the OCI layout). \
            Steps pair as `imgbench check` pairs them; for each step whose layer differs, the \
            files one layer holds and the other does not, or holds with other content (SHA-256), \
            the largest first; then the packages of the two final images (var/lib/dpkg/status) \
            added, removed, upgraded or downgraded. Exit status 0, or 2 when a folder cannot be read.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, markdown }

    @Argument(help: "The old build's output folder.", transform: absolutePath) var old: String
    @Argument(help: "The new build's output folder.", transform: absolutePath) var new: String
    @Option(help: "table, json or markdown (for a pull-request comment).") var format: Format = .table
    @Option(help: "File changes shown per step (table and markdown; JSON has all).") var top = 20

    func run() throws {
        let diff: ImageDiff
        do {
            diff = try ImageDiff.compare(old: old, new: new)
        } catch let e as DocumentError {
            printErr("imgbench: error: \(e)")
            throw ExitCode(2)
        }
        switch format {
        case .table: printOut(DiffTable.render(diff, top: top))
        case .json: printOut(try JSONOutput.string(diff))
        case .markdown: printOut(diff.markdown(top: top))
        }
    }
}

enum DiffTable {
    static func render(_ d: ImageDiff, top: Int) -> String {
        var lines: [String] = []
        for s in d.steps {
            var t = TextTable(header: ["change", "path", "size (old -> new)"])
            for f in s.files.prefix(top) { t.rows.append([f.what, f.path, f.sizes]) }
            lines += ["\(d.recipe): \(ImageDiff.nameOf(s.step)): \(s.files.count) files differ", t.render()]
            if s.files.count > top { lines.append("... \(s.files.count - top) more (--top, or --format json)") }
            lines.append("")
        }
        if d.steps.isEmpty { lines += ["\(d.recipe): no step's layer differs", ""] }
        var p = TextTable(header: ["package", "change", "old", "new"])
        for c in d.packages { p.rows.append([c.name, c.change.rawValue, c.oldVersion ?? "-", c.newVersion ?? "-"]) }
        lines.append(d.packages.isEmpty ? "Debian packages: none added, removed or changed" : "Debian packages:\n" + p.render())
        return lines.joined(separator: "\n")
    }
}
