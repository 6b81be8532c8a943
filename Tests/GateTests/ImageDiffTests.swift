import Foundation
@testable import Gate
import Host
@testable import ImageBuild
import Layers
import OCI
import Testing
import TestSupport

// `imgbench diff` on two output folders made here: the same base layer, then a step whose new
// version installs one more package, upgrades one and deletes a file.

private func status(_ packages: [(String, String)]) -> String {
    packages.map { "Package: \($0.0)\nStatus: install ok installed\nArchitecture: amd64\nVersion: \($0.1)\nDescription: x\n multi-line\n" }
        .joined(separator: "\n") + "\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n"
}

/// A tree under `dir` of `files` (path: content) captured as a layer into `store`; aufs-style
/// `.wh.NAME` files become whiteouts.
private func layer(_ files: [String: String], _ dir: String, into store: BlobStore) throws -> String {
    for (path, content) in files {
        let file = "\(dir)/\(path)"
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(content.utf8).write(to: URL(fileURLWithPath: file))
    }
    return try LayerCapture.capture(.aufsUpper(dir), into: store).layer.descriptor.digest.description
}

private func output(_ folder: String, base: String, step: String) throws {
    func measure(_ digest: String) -> BuildReport.Measure {
        var m = BuildReport.Measure(seconds: 1, cacheHit: false)
        m.layerDigest = digest
        return m
    }
    var outputs = BuildReport.Outputs(folder: folder)
    outputs.ociLayout = "oci"
    let report = BuildReport(recipe: "t", recipeFile: "t/Containerfile", targets: ["container"], startedAt: "2026-01-01T00:00:00Z",
                             base: .init(description: "scratch", key: "k", container: measure(base), vm: nil),
                             steps: [.init(index: 1, instruction: "RUN apt-get update && apt-get install -y b", location: "t:2:1", target: "both",
                                           key: "k1", changesFiles: true, container: measure(step), vm: nil)],
                             finalisation: nil, totals: .init(seconds: 1, cacheHits: 0, cacheMisses: 1), outputs: outputs)
    try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: "\(folder)/report.json"))
}

@Test func diffNamesTheAddedPackageTheUpgradeAndTheDeletedFileLargestFirst() throws {
    let dir = try TempDir("diff")
    let fm = FileManager.default
    let old = BlobStore(root: dir.file("old/oci")), new = BlobStore(root: dir.file("new/oci"))
    for s in [old, new] { try fm.createDirectory(atPath: s.directory, withIntermediateDirectories: true) }
    let base = try layer(["etc/motd": "hello", "usr/bin/a": String(repeating: "a", count: 100),
                          "var/lib/dpkg/status": status([("a", "1.0-1"), ("b", "2.0-1")])], dir.file("base"), into: old)
    let hex = String(base.dropFirst("sha256:".count))
    try fm.copyItem(atPath: "\(old.directory)/\(hex)", toPath: "\(new.directory)/\(hex)")
    let was = try layer(["usr/bin/b": String(repeating: "b", count: 1000), "var/lib/dpkg/status": status([("a", "1.0-1"), ("b", "2.0-1")])],
                        dir.file("was"), into: old)
    let now = try layer(["usr/bin/b": String(repeating: "B", count: 1000), "usr/bin/c": String(repeating: "c", count: 5000), "etc/.wh.motd": "",
                         "var/lib/dpkg/status": status([("a", "1.0-1"), ("b", "2.0-2"), ("c", "3.0")])], dir.file("now"), into: new)
    try output(dir.file("old"), base: base, step: was)
    try output(dir.file("new"), base: base, step: now)

    let d = try ImageDiff.compare(old: dir.file("old"), new: dir.file("new"))
    #expect(d.steps.count == 1, "the base layer is the same: \(d.steps.map(\.step))")
    let files = try #require(d.steps.first?.files)
    #expect(files.first.map { $0.path == "usr/bin/c" && $0.change == .added && $0.newSize == 5000 } == true, "\(files)")
    // The same size with other bytes is a change; the whiteout says the step now deletes the file.
    #expect(files.contains { $0.path == "usr/bin/b" && $0.change == .changed && $0.oldSize == 1000 && $0.newSize == 1000 })
    #expect(files.contains { $0.path == "etc/motd" && $0.what == "now deleted" })
    #expect(files.contains { $0.path == "var/lib/dpkg/status" && $0.change == .changed })
    #expect(zip(files, files.dropFirst()).allSatisfy { $0.bytes >= $1.bytes }, "largest first")
    #expect(d.packages == [ImageDiff.PackageChange(name: "b", change: .upgraded, oldVersion: "2.0-1", newVersion: "2.0-2"),
                           ImageDiff.PackageChange(name: "c", change: .added, oldVersion: nil, newVersion: "3.0")])
    let md = d.markdown()
    #expect(md.contains("| added | `usr/bin/c` | - -> 4.9 KiB |") && md.contains("| c | added | - | 3.0 |"), "\(md)")
    // The other way round: removed and downgraded.
    let back = try ImageDiff.compare(old: dir.file("new"), new: dir.file("old"))
    #expect(back.packages.map(\.change) == [.downgraded, .removed])
    #expect(back.steps.first?.files.first.map { $0.path == "usr/bin/c" && $0.change == .removed } == true)
    #expect { try ImageDiff.compare(old: dir.file("old"), new: dir.file("missing")) } throws: { "\($0)".contains("missing/report.json") }
}

@Test(arguments: [
    ("1.0", "1.0-1", -1), ("1.0~rc1", "1.0", -1), ("2:1.0", "1:9.9", 1), ("1.10", "1.9", 1), ("1.0a", "1.0", 1),
    ("1.0+b1", "1.0", 1), ("10.11.6-0+deb12u1", "10.11.6-0+deb12u1", 0), ("1.2.3-1", "1.2.3-1~bpo12+1", 1), ("001", "1", 0),
])
func debianVersionsCompareAsDpkgDoes(a: String, b: String, order: Int) {
    #expect(DebianPackages.compare(a, b).signum() == order, "\(a) vs \(b)")
    #expect(DebianPackages.compare(b, a).signum() == -order, "\(b) vs \(a)")
}
