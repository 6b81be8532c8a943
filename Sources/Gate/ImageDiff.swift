import Foundation
import Host
import ImageBuild
import Layers
import OCI
import Repro

/// `imgbench diff OLD NEW`: what changed between two builds of a recipe. Container side: per
/// step (paired as `check` pairs them), the files the step's layer holds that the other build's
/// layer does not, or holds with other content, the largest first; and the Debian packages of the
/// two final images (their `var/lib/dpkg/status`) added, removed, upgraded or downgraded. VM
/// side: the same for the final disks' filesystems, file by file and package by package.
public struct ImageDiff: Codable, Equatable, Sendable {
    public struct FileChange: Codable, Equatable, Sendable {
        public enum Change: String, Codable, Sendable { case added, removed, changed }
        public var path: String
        public var change: Change
        /// `LayerInventory.File.kind` in each layer: file, symlink, whiteout (the step deletes it), ...
        public var oldKind: String?
        public var newKind: String?
        public var oldSize: Int64?
        public var newSize: Int64?

        /// The larger of the two sizes: what the order goes by.
        public var bytes: Int64 { max(oldSize ?? 0, newSize ?? 0) }
    }

    public struct StepDiff: Codable, Equatable, Sendable {
        public var step: StepPairing
        public var oldLayer: String?
        public var newLayer: String?
        /// Largest first.
        public var files: [FileChange]
    }

    public struct PackageChange: Codable, Equatable, Sendable {
        public enum Change: String, Codable, Sendable { case added, removed, upgraded, downgraded }
        public var name: String
        public var change: Change
        public var oldVersion: String?
        public var newVersion: String?
    }

    public var recipe: String
    public var old: String
    public var new: String
    /// Steps whose layers differ (paired steps with the same layer, and metadata steps, are left out).
    public var steps: [StepDiff]
    public var packages: [PackageChange]
    /// The final VM disks compared; nil when either build has none or it was not asked for.
    public var vm: DiskDiff?
    /// What a machine running the old build downloads to run the new one.
    public var update: UpdateDelta

    public struct DiskDiff: Codable, Equatable, Sendable {
        public var oldDisk: String
        public var newDisk: String
        /// Largest first.
        public var files: [FileChange]
        public var packages: [PackageChange]
    }
}

extension ImageDiff {
    /// Compares the container images of two build output folders (each with its report.json and
    /// OCI layout) and, given a scratch folder for the disks' files, their final VM disks.
    public static func compare(old: String, new: String, vmScratch: String? = nil) throws -> ImageDiff {
        let o = try BuildReport.load("\(old)/report.json"), n = try BuildReport.load("\(new)/report.json")
        guard o.recipe == n.recipe else {
            throw GateError.invalid(place: "\(old)/report.json: at recipe", message: "the old build is of recipe '\(o.recipe)', the new of '\(n.recipe)'")
        }
        var layers = LayerShelf()
        let oldLayout = "\(old)/\(o.outputs.ociLayout ?? "oci")", newLayout = "\(new)/\(n.outputs.ociLayout ?? "oci")"
        var steps: [StepDiff] = []
        for (pairing, now, was) in SizeGate.pair(report: n, baseline: o) {
            let nd = now?.container?.layerDigest, od = was?.container?.layerDigest
            guard nd != nil || od != nil, nd != od else { continue }
            let ni = try nd.map { try layers.inventory($0, layout: newLayout) }, oi = try od.map { try layers.inventory($0, layout: oldLayout) }
            let files = fileChanges(old: oi ?? LayerInventory(), new: ni ?? LayerInventory())
            if !files.isEmpty { steps.append(StepDiff(step: pairing, oldLayer: od, newLayer: nd, files: files)) }
        }
        let packages = packageChanges(old: try layers.packages(of: o, layout: oldLayout), new: try layers.packages(of: n, layout: newLayout))
        var diff = ImageDiff(recipe: n.recipe, old: old, new: new, steps: steps, packages: packages, update: .container(old: o, new: n, baseline: old))
        if let vmScratch, let od = o.outputs.vmDisk.map({ "\(old)/\($0)" }), let nd = n.outputs.vmDisk.map({ "\(new)/\($0)" }) {
            diff.vm = try compareDisks(old: od, new: nd, scratch: vmScratch)
            try diff.update.addVM(old: od, new: nd, scratch: vmScratch)
        }
        return diff
    }

    /// The final disks' filesystems, read through debugfs (`DiskFiles`).
    static func compareDisks(old: String, new: String, scratch: String) throws -> DiskDiff {
        for d in [old, new] where !FileManager.default.fileExists(atPath: d) {
            throw GateError.unreadable(path: d, message: "no such VM disk (the vmDisk report.json names)")
        }
        let trees = try DiskFiles.inventories(of: [old, new], scratch: scratch, keeping: [DebianPackages.statusPath])
        func packages(_ i: LayerInventory) -> [String: String] {
            i.kept[DebianPackages.statusPath].map { DebianPackages.installed(String(decoding: $0, as: UTF8.self)) } ?? [:]
        }
        return DiskDiff(oldDisk: old, newDisk: new, files: fileChanges(old: trees[0], new: trees[1]),
                        packages: packageChanges(old: packages(trees[0]), new: packages(trees[1])))
    }

    /// Entries one layer holds and the other does not, or holds as another kind or content;
    /// directories are left out (their metadata changes with every build).
    static func fileChanges(old: LayerInventory, new: LayerInventory) -> [FileChange] {
        var out: [FileChange] = []
        for path in Set(old.files.keys).union(new.files.keys) {
            let a = old.files[path], b = new.files[path]
            if a?.kind == "dir" || b?.kind == "dir" || a == b { continue }
            let change: FileChange.Change = a == nil ? .added : b == nil ? .removed : .changed
            out.append(FileChange(path: path, change: change, oldKind: a?.kind, newKind: b?.kind, oldSize: a?.size, newSize: b?.size))
        }
        return out.sorted { ($0.bytes, $1.path) > ($1.bytes, $0.path) }
    }

    static func packageChanges(old: [String: String], new: [String: String]) -> [PackageChange] {
        var out: [PackageChange] = []
        for name in Set(old.keys).union(new.keys).sorted() {
            let a = old[name], b = new[name]
            guard a != b else { continue }
            let change: PackageChange.Change
            if let a, let b { change = DebianPackages.compare(a, b) < 0 ? .upgraded : .downgraded } else { change = a == nil ? .added : .removed }
            out.append(PackageChange(name: name, change: change, oldVersion: a, newVersion: b))
        }
        return out
    }
}

/// Layer inventories read once per build folder and digest.
struct LayerShelf {
    private var read: [String: LayerInventory] = [:]

    mutating func inventory(_ digest: String, layout: String) throws -> LayerInventory {
        if let i = read["\(layout)\n\(digest)"] { return i }
        let blob = BlobStore(root: layout).path(of: try Digest(parsing: digest))
        guard FileManager.default.fileExists(atPath: blob) else {
            throw GateError.unreadable(path: blob, message: "no such layer blob (a layer report.json names, in its OCI layout)")
        }
        let i = try LayerInventory.read(blob, keeping: [DebianPackages.statusPath])
        read["\(layout)\n\(digest)"] = i
        return i
    }

    /// The final image's installed packages: the package database of the topmost layer that
    /// writes or deletes it; none when no layer has one.
    mutating func packages(of report: BuildReport, layout: String) throws -> [String: String] {
        let digests = ([report.base.container?.layerDigest] + report.steps.map { $0.container?.layerDigest }).compactMap { $0 }
        for d in digests.reversed() {
            let i = try inventory(d, layout: layout)
            guard let f = i.files[DebianPackages.statusPath] else { continue }
            guard f.kind == "file", let data = i.kept[DebianPackages.statusPath] else { return [:] }
            return DebianPackages.installed(String(decoding: data, as: UTF8.self))
        }
        return [:]
    }
}

extension ImageDiff.FileChange {
    /// "added", "removed", "changed", or what a whiteout means: the step now deletes the file,
    /// or no longer does.
    public var what: String {
        if newKind == "whiteout" && oldKind != "whiteout" { return "now deleted" }
        if oldKind == "whiteout" && newKind != "whiteout" { return newKind == nil ? "no longer deleted" : "written, was deleted" }
        return change.rawValue
    }

    /// "1.2 MiB -> 3.4 MiB", "- -> 3.4 MiB".
    public var sizes: String {
        func size(_ s: Int64?, _ kind: String?) -> String {
            guard let s, let kind, kind != "whiteout" else { return "-" }
            return ByteCount.format(UInt64(max(0, s)))
        }
        return "\(size(oldSize, oldKind)) -> \(size(newSize, newKind))"
    }
}

extension ImageDiff {
    /// "step 4 `RUN ...` (new)" as `check` names steps.
    public static func nameOf(_ p: StepPairing) -> String {
        let at = p.index.map { $0 == 0 ? "base" : "step \($0)" } ?? "step \(p.baselineIndex ?? 0) of the old build"
        let status = p.status == .same ? "" : p.status == .changed ? " (was `\(p.baselineInstruction ?? "")`)" : " (\(p.status.rawValue))"
        return "\(at) `\(p.instruction)`\(status)"
    }

    /// Markdown for a pull-request comment: per step the `top` largest file changes, then the packages.
    public func markdown(top: Int = 20) -> String {
        var lines = ["## imgbench diff: \(recipe)", "", "Container image, `\(old)` → `\(new)`.", ""]
        for s in steps {
            lines += ["### \(Self.nameOf(s.step).replacingOccurrences(of: "|", with: "\\|"))", "", "| change | path | size |", "|---|---|---|"]
            for f in s.files.prefix(top) { lines.append("| \(f.what) | `\(f.path)` | \(f.sizes) |") }
            if s.files.count > top { lines.append("| … | \(s.files.count - top) more | |") }
            lines.append("")
        }
        if steps.isEmpty { lines += ["No step's layer differs.", ""] }
        lines += Self.markdown(packages: packages, title: "Debian packages (container image)")
        lines += ["", "**Update delta** (what a machine running the old build downloads): \(update.summary)."]
        if let vm {
            lines += ["", "## VM disk", "", "`\(vm.oldDisk)` → `\(vm.newDisk)`: \(vm.files.count) files differ.", "",
                      "| change | path | size |", "|---|---|---|"]
            for f in vm.files.prefix(top) { lines.append("| \(f.what) | `\(f.path)` | \(f.sizes) |") }
            if vm.files.count > top { lines.append("| … | \(vm.files.count - top) more | |") }
            lines += [""] + Self.markdown(packages: vm.packages, title: "Debian packages (VM disk)")
        }
        return lines.joined(separator: "\n")
    }

    static func markdown(packages: [PackageChange], title: String) -> [String] {
        var lines = ["### \(title)", ""]
        guard !packages.isEmpty else { return lines + ["No package added, removed or changed."] }
        lines += ["| package | change | old | new |", "|---|---|---|---|"]
        for p in packages { lines.append("| \(p.name) | \(p.change.rawValue) | \(p.oldVersion ?? "-") | \(p.newVersion ?? "-") |") }
        return lines
    }
}
