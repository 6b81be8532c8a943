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

@discardableResult
private func output(_ folder: String, base: String, step: String, stepBytes: UInt64 = 0) throws -> BuildReport {
    func measure(_ digest: String, _ bytes: UInt64) -> BuildReport.Measure {
        var m = BuildReport.Measure(seconds: 1, cacheHit: false)
        m.layerDigest = digest
        m.layerUncompressedBytes = bytes
        m.layerCompressedBytes = bytes / 2
        return m
    }
    var outputs = BuildReport.Outputs(folder: folder)
    outputs.ociLayout = "oci"
    var totals = BuildReport.Totals(seconds: 1, cacheHits: 0, cacheMisses: 1)
    totals.imageUncompressedBytes = 10_000 + stepBytes
    let report = BuildReport(recipe: "t", recipeFile: "t/Containerfile", targets: ["container"], startedAt: "2026-01-01T00:00:00Z",
                             base: .init(description: "scratch", key: "k", container: measure(base, 10_000), vm: nil),
                             steps: [.init(index: 1, instruction: "RUN apt-get update && apt-get install -y b", location: "t:2:1", target: "both",
                                           key: "k1", changesFiles: true, container: measure(step, stepBytes), vm: nil)],
                             finalisation: nil, totals: totals, outputs: outputs)
    try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: "\(folder)/report.json"))
    return report
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
    let oldReport = try output(dir.file("old"), base: base, step: was, stepBytes: 2000)
    let newReport = try output(dir.file("new"), base: base, step: now, stepBytes: 7000)

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
    // The update: the one layer the new image has and the old lacks.
    #expect(d.update.containerNewLayers == 1 && d.update.containerBytes == 3500 && d.update.containerFullBytes == 8500, "\(d.update)")
    #expect(d.update.vmBytes == nil && md.contains("container: 1 new layers, 3.4 KiB of 8.3 KiB compressed"), "\(md)")
    // The other way round: removed and downgraded.
    let back = try ImageDiff.compare(old: dir.file("new"), new: dir.file("old"))
    #expect(back.packages.map(\.change) == [.downgraded, .removed])
    #expect(back.steps.first?.files.first.map { $0.path == "usr/bin/c" && $0.change == .removed } == true)
    #expect { try ImageDiff.compare(old: dir.file("old"), new: dir.file("missing")) } throws: { "\($0)".contains("missing/report.json") }

    // check names what made a breach grow, in the message its table and JUnit print.
    var gate = SizeGate.compare(report: newReport, baseline: oldReport, budget: try Budget.parse("default: {bytes: 0, percent: 0}\n", file: "b.yaml"))
    SizeGate.explain(&gate, report: newReport, baseline: oldReport, reportFolder: dir.file("new"), baselineFolder: dir.file("old"))
    let breach = try #require(gate.breaches.first { $0.step?.index == 1 })
    #expect(breach.contributors?.first?.path == "usr/bin/c" && breach.contributors?.contains { $0.path == "etc/motd" } == false, "\(breach.contributors ?? [])")
    #expect(breach.message.contains("; grew most: usr/bin/c (added, +4.9 KiB), var/lib/dpkg/status (changed, +"), "\(breach.message)")
    let image = try #require(gate.breaches.first { $0.step == nil })
    #expect(image.contributors?.first?.path == "usr/bin/c", "the image's breach is explained over every step")
}

@Test(arguments: [
    ("1.0", "1.0-1", -1), ("1.0~rc1", "1.0", -1), ("2:1.0", "1:9.9", 1), ("1.10", "1.9", 1), ("1.0a", "1.0", 1),
    ("1.0+b1", "1.0", 1), ("10.11.6-0+deb12u1", "10.11.6-0+deb12u1", 0), ("1.2.3-1", "1.2.3-1~bpo12+1", 1), ("001", "1", 0),
])
func debianVersionsCompareAsDpkgDoes(a: String, b: String, order: Int) {
    #expect(DebianPackages.compare(a, b).signum() == order, "\(a) vs \(b)")
    #expect(DebianPackages.compare(b, a).signum() == -order, "\(b) vs \(a)")
}

/// A qcow2 disk whose ext4 filesystem holds `files`, made as the build's disks are (the whole
/// disk one filesystem), with mkfs.ext4 -d and qemu-img.
private func disk(_ files: [String: String], _ dir: String, at qcow2: String) throws {
    for (path, content) in files {
        let file = "\(dir)/\(path)"
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(content.utf8).write(to: URL(fileURLWithPath: file))
    }
    try FileManager.default.createDirectory(atPath: (qcow2 as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    for argv in [["mkfs.ext4", "-q", "-F", "-d", dir, "\(dir).raw", "32M"], ["qemu-img", "convert", "-O", "qcow2", "\(dir).raw", qcow2]] {
        let r = try run(argv)
        #expect(r.status == 0, "\(argv): \(r.output)")
    }
}

@Test func diffReadsTheVMDisksFilesystemsForFilesAndPackages() throws {
    let dir = try TempDir("diff-vm")
    let fm = FileManager.default
    for side in ["old", "new"] { try fm.createDirectory(atPath: dir.file("\(side)/oci/blobs/sha256"), withIntermediateDirectories: true) }
    let store = BlobStore(root: dir.file("old/oci"))
    let base = try layer(["etc/hostname": "t"], dir.file("base"), into: store)
    let hex = String(base.dropFirst("sha256:".count))
    try fm.copyItem(atPath: "\(store.directory)/\(hex)", toPath: dir.file("new/oci/blobs/sha256/\(hex)"))
    for (side, files) in [("old", ["etc/motd": "hello", "usr/bin/a": "a", "var/lib/dpkg/status": status([("a", "1.0-1"), ("b", "2.0-1")])]),
                          ("new", ["usr/bin/a": "a", "usr/bin/c": String(repeating: "c", count: 9000),
                                   "var/lib/dpkg/status": status([("a", "1.0-1"), ("b", "2.0-2"), ("c", "3.0")])])] {
        try disk(files, dir.file("\(side)-tree"), at: dir.file("\(side)/vm/disk.qcow2"))
        var report = try output(dir.file(side), base: base, step: base)
        report.outputs.vmDisk = "vm/disk.qcow2"
        try JSONEncoder().encode(report).write(to: URL(fileURLWithPath: dir.file("\(side)/report.json")))
    }
    let d = try ImageDiff.compare(old: dir.file("old"), new: dir.file("new"), vmScratch: dir.file("scratch"))
    let vm = try #require(d.vm)
    #expect(vm.files.first.map { $0.path == "usr/bin/c" && $0.change == .added && $0.newSize == 9000 } == true, "\(vm.files)")
    #expect(vm.files.contains { $0.path == "etc/motd" && $0.change == .removed })
    #expect(!vm.files.contains { $0.path == "usr/bin/a" || $0.path == "lost+found" }, "same files and folders are not listed")
    #expect(vm.packages.map(\.name) == ["b", "c"] && vm.packages.map(\.change) == [.upgraded, .added])
    #expect(try fm.contentsOfDirectory(atPath: dir.file("scratch")).isEmpty, "the raw copies and trees are removed")
    #expect(d.markdown().contains("## VM disk") && d.markdown().contains("| added | `usr/bin/c` | - -> 8.8 KiB |"), "\(d.markdown())")
    #expect(try ImageDiff.compare(old: dir.file("old"), new: dir.file("new")).vm == nil, "not asked for")
    // The update delta: the clusters that differ; none for the same build, whose container side is zero too.
    #expect((d.update.vmClusters ?? 0) > 0 && (d.update.vmBytes ?? 0) < (d.update.vmFullBytes ?? 0), "\(d.update)")
    let same = try ImageDiff.compare(old: dir.file("old"), new: dir.file("old"), vmScratch: dir.file("scratch"))
    #expect(same.update.containerBytes == 0 && same.update.containerNewLayers == 0 && same.steps.isEmpty && same.vm?.files.isEmpty == true)
    #expect(same.update.vmClusters == 0 && (same.update.vmBytes ?? .max) < 1 << 20, "only the qcow2's own metadata: \(same.update)")
    #expect(try fm.contentsOfDirectory(atPath: dir.file("scratch")).isEmpty)
}
