import ArgumentParser
import Foundation
import Gate
import Host
import ImageBuild

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "What changed between two builds of a recipe: files per step and Debian packages, in the container image and on the VM disk.",
        discussion: """
            OLD and NEW are build output folders (out/NAME, with report.json and the OCI layout), \
            or their report.json files (read with the layout and disk beside them). \
            Steps pair as `imgbench check` pairs them; for each step whose layer differs, the \
            files one layer holds and the other does not, or holds with other content (SHA-256), \
            the largest first; then the packages of the two final images (var/lib/dpkg/status) \
            added, removed, upgraded or downgraded. The same for the final VM disks' filesystems, \
            copied out with debugfs into --scratch (no root needed). Exit status 0, or 2 when a \
            folder cannot be read. Last, the update delta: the compressed layers the new image \
            has and the old lacks, and a qcow2 of the new disk's clusters that differ from the \
            old disk (backed by it), beside each side's full size.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, markdown }

    @Argument(help: "The old build's output folder, or its report.json.", transform: outputFolder) var old: String
    @Argument(help: "The new build's output folder, or its report.json.", transform: outputFolder) var new: String
    @Option(help: "table, json or markdown (for a pull-request comment).") var format: Format = .table
    @Option(help: "File changes shown per step (table and markdown; JSON has all).") var top = 20
    @Option(help: "Where the VM disks' files are copied out to be compared (removed after).", transform: absolutePath)
    var scratch = "/var/tmp"
    @Flag(help: "Compare the container images only, not the VM disks.") var containerOnly = false

    func run() throws {
        let diff: ImageDiff
        do {
            // Ctrl-C removes the disks' raw copies and trees (registered with Cleanup).
            diff = try reportingErrors {
                try Interrupts.releasing { try ImageDiff.compare(old: old, new: new, vmScratch: containerOnly ? nil : scratch) }
            }
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
        lines.append(packages(d.packages, "Debian packages of the container image"))
        if let vm = d.vm {
            var t = TextTable(header: ["change", "path", "size (old -> new)"])
            for f in vm.files.prefix(top) { t.rows.append([f.what, f.path, f.sizes]) }
            lines += ["", "\(d.recipe): VM disk: \(vm.files.count) files differ", t.render()]
            if vm.files.count > top { lines.append("... \(vm.files.count - top) more (--top, or --format json)") }
            lines += ["", packages(vm.packages, "Debian packages of the VM disk")]
        }
        lines += ["", "update delta (what a machine running the old build downloads): \(d.update.summary)"]
        return lines.joined(separator: "\n")
    }

    static func packages(_ list: [ImageDiff.PackageChange], _ title: String) -> String {
        guard !list.isEmpty else { return "\(title): none added, removed or changed" }
        var p = TextTable(header: ["package", "change", "old", "new"])
        for c in list { p.rows.append([c.name, c.change.rawValue, c.oldVersion ?? "-", c.newVersion ?? "-"]) }
        return "\(title):\n" + p.render()
    }
}

/// A build's output folder, given as the folder or as its report.json.
func outputFolder(_ argument: String) -> String {
    let p = absolutePath(argument)
    return p.hasSuffix(".json") ? (p as NSString).deletingLastPathComponent : p
}
