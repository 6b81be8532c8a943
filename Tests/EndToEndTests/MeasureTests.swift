import Foundation
import Testing
import TestSupport

/// `imgbench measure clone|cow|wasted` end to end on small recipes (in BuildTests, so that they
/// run one at a time with the other builds over the shared cache).
extension BuildTests {
    /// Decodes a command's JSON output.
    func json(_ r: ProcessResult, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        try #require(r.status == 0, "exit \(r.status): \(r.stderr.suffix(3000))", sourceLocation: sourceLocation)
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], sourceLocation: sourceLocation)
    }

    func rows(_ result: [String: Any]) -> [[String: Any]] { result["rows"] as? [[String: Any]] ?? [] }

    func median(_ row: [String: Any]?, _ key: String) -> Double? { (row?[key] as? [String: Any])?["median"] as? Double }

    @Test func cloneOfTinyCostsUnderOneMiBAndAFullCopyAtLeastTheImage() throws {
        let dir = try TempDir("measure-clone", in: Self.scratch)
        let out = dir.file("tiny")
        let b = try build(Self.tiny, output: out)
        try #require(b.status == 0, "\(b.stderr.suffix(3000))")
        let report = try readReport(out)
        // vfs is left out: it has no copy-on-write, so its clone is a full copy by design.
        let result = try json(try imgbench("measure", "clone", out, "--count", "3", "--format", "json",
                                           "--drivers", "overlay,fuse-overlayfs,btrfs,unionfs,aufs"))
        let all = rows(result)
        let containers = all.filter { $0["kind"] as? String == "container" && $0["fullCopy"] as? Bool == false }
        #expect(containers.count == 5, "\(containers)")
        for r in containers {
            if r["available"] as? Bool == true {
                let bytes = try #require(median(r, "bytes"), "\(r)")
                #expect(bytes > 0 && bytes < 1_048_576, "container clone on \(r["storage"] ?? "?"): \(bytes) bytes")
                #expect((r["bytes"] as? [String: Any])?["samples"] as? Int == 3)
            } else {
                #expect((r["reason"] as? String)?.isEmpty == false, "an unavailable driver without a reason: \(r)")
            }
        }
        #expect(containers.first { $0["storage"] as? String == "aufs" }?["available"] as? Bool == false, "aufs is not in this kernel")
        let vm = try #require(all.first { $0["storage"] as? String == "qcow2 overlay" })
        let vmBytes = try #require(median(vm, "bytes"))
        #expect(vmBytes > 0 && vmBytes < 1_048_576, "VM clone: \(vmBytes) bytes")
        let fullRoot = try #require(all.first { $0["kind"] as? String == "container" && $0["fullCopy"] as? Bool == true })
        let fullDisk = try #require(all.first { $0["kind"] as? String == "vm" && $0["fullCopy"] as? Bool == true })
        #expect(try #require(median(fullRoot, "bytes")) >= Double(try #require(report.totals.imageUncompressedBytes)))
        #expect(try #require(median(fullDisk, "bytes")) >= Double(try #require(report.totals.vmFlattenedAllocatedBytes)))
        expectNothingLeft(under: [out], marker: "imgbench-measure-clone-unused-marker")
    }

    @Test func cowGivesARatioForEveryWorkingDriverAndSaysWhyTheOthersAreMissing() throws {
        let dir = try TempDir("measure-cow", in: Self.scratch)
        let recipe = dir.file("cowtest")
        try FileManager.default.createDirectory(atPath: recipe, withIntermediateDirectories: true)
        let mark = "cow-\(UUID().uuidString.prefix(8))"
        // 8 MiB written, and one file of the base changed (copied up whole by the file-level drivers).
        try (Self.head + "RUN head -c 8388608 /dev/urandom > /var/tmp/\(mark) && echo \(mark) >> /etc/issue\n")
            .write(toFile: "\(recipe)/Containerfile", atomically: true, encoding: .utf8)
        let result = try json(try imgbench("measure", "cow", "--workload", recipe, "--cache", Self.cache,
                                           "--workdir", dir.file("work"), "--format", "json", "--progress", "none",
                                           "--booted-vm", "--vm-timeout", "300"))
        let all = rows(result)
        let baseline = try #require(all.first { $0["kind"] as? String == "baseline" })
        #expect(median(baseline, "ratio") == 1)
        for driver in ["overlay", "fuse-overlayfs", "btrfs", "vfs", "unionfs", "aufs"] {
            let r = try #require(all.first { $0["storage"] as? String == driver }, "no row for \(driver)")
            if r["available"] as? Bool == true {
                #expect(median(r, "ratio").map { $0 > 0 } == true, "\(driver): no ratio: \(r)")
                #expect(median(r, "bytesWritten").map { $0 >= 8_388_608 } == true, "\(driver): \(r)")
            } else {
                #expect((r["reason"] as? String)?.isEmpty == false, "\(driver): unavailable without a reason")
            }
        }
        #expect(median(all.first { $0["storage"] as? String == "overlay" }, "filesCopiedUp") == 1, "overlay copies /etc/issue up")
        for vm in all where vm["kind"] as? String == "vm" {
            #expect(median(vm, "ratio").map { $0 > 0 } == true, "\(vm)")
            #expect(median(vm, "bytesWritten").map { $0 >= 8_388_608 } == true, "\(vm)")
        }
        // The booted VM says how it ran: under software emulation here, and not comparable then.
        let booted = try #require(all.first { ($0["storage"] as? String)?.hasPrefix("booted VM") == true }, "no booted VM row")
        let note = booted["note"] as? String ?? ""
        #expect(note.contains("KVM") && (!note.contains("TCG") || note.contains("not comparable")), "\(note)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("work")), "the scratch folder is left")
        expectNothingLeft(under: [dir.path], marker: mark)
    }

    @Test func wastedBytesOfADeletedFileShowOnTheLayerAndTheLinkThatWroteIt() throws {
        let dir = try TempDir("measure-wasted", in: Self.scratch)
        let recipe = dir.file("wastetest")
        try FileManager.default.createDirectory(atPath: recipe, withIntermediateDirectories: true)
        let name = "waste-\(UUID().uuidString.prefix(8))"
        try (Self.head + "RUN head -c 10000000 /dev/urandom > /var/tmp/\(name)\nRUN rm /var/tmp/\(name)\n")
            .write(toFile: "\(recipe)/Containerfile", atomically: true, encoding: .utf8)
        let out = dir.file("out")
        let b = try build(recipe, output: out)
        try #require(b.status == 0, "\(b.stderr.suffix(3000))")
        let result = try json(try imgbench("measure", "wasted", out, "--format", "json"))
        let oci = try #require(result["oci"] as? [String: Any])
        let layers = try #require(oci["layers"] as? [[String: Any]])
        try #require(layers.count == 3, "base, the write, the delete: \(layers)")
        #expect((layers[1]["hiddenBytes"] as? Int ?? 0) >= 10_000_000, "the writing layer: \(layers[1])")
        #expect((layers[1]["step"] as? String)?.contains(name) == true)
        #expect((layers[2]["hiddenBytes"] as? Int) == 0)
        let offenders = try #require(oci["offenders"] as? [[String: Any]])
        #expect(offenders.first?["path"] as? String == "var/tmp/\(name)" && offenders.first?["layer"] as? Int == 1, "\(offenders.prefix(3))")
        let vm = try #require(result["vm"] as? [String: Any])
        let links = try #require(vm["links"] as? [[String: Any]])
        let writing = try #require(links.first { ($0["step"] as? String)?.contains("head -c") == true }, "\(links)")
        #expect((writing["freedBytes"] as? Int ?? 0) >= 10_000_000, "the writing link: \(writing)")
    }
}
