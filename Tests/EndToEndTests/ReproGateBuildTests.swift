import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import TestSupport

/// The size gate on real builds, and two clean builds of Recipes/tiny compared by
/// `imgbench verify-repro`. Part of the serialized, root-only build suite (they share its cache).
extension BuildTests {
    @Test func gateFailsAStepAdding50MBAndPassesAMetadataReorder() throws {
        let dir = try TempDir("build-gate", in: Self.scratch)
        let mark = UUID().uuidString.prefix(8)
        let steps = "RUN echo \"gate \(mark)\" > /gate.txt\n"
        let recipe = try writeRecipe(dir, "gate", Self.head + "ENV GATE=\(mark)\nLABEL org.example.gate=\(mark)\n" + steps + "CMD [\"/bin/true\"]\n")
        let baseline = try build(recipe, output: dir.file("baseline"))
        try #require(baseline.status == 0, "\(baseline.stderr.suffix(3000))")

        // LABEL before ENV: no step is new or removed, no figure grows past the built-in limit.
        try writeRecipe(dir, "gate", Self.head + "LABEL org.example.gate=\(mark)\nENV GATE=\(mark)\n" + steps + "CMD [\"/bin/true\"]\n")
        let reordered = try build(recipe, output: dir.file("reordered"))
        try #require(reordered.status == 0, "\(reordered.stderr.suffix(3000))")
        var r = try imgbench("check", "\(dir.file("reordered"))/report.json", "--baseline", "\(dir.file("baseline"))/report.json")
        #expect(r.status == 0, "a metadata reorder failed the gate: \(r.output)")
        #expect(!r.stdout.contains("[new]") && !r.stdout.contains(": new;"), "\(r.stdout)")

        // A step that writes 50 MB of random bytes (they do not compress away).
        try writeRecipe(dir, "gate", Self.head + "ENV GATE=\(mark)\nLABEL org.example.gate=\(mark)\n" + steps
                        + "RUN dd if=/dev/urandom of=/big.bin bs=1M count=50 status=none\nCMD [\"/bin/true\"]\n")
        let grown = try build(recipe, output: dir.file("grown"))
        try #require(grown.status == 0, "\(grown.stderr.suffix(3000))")
        r = try imgbench("check", "\(dir.file("grown"))/report.json", "--baseline", "\(dir.file("baseline"))/report.json",
                         "--junit", dir.file("junit.xml"))
        #expect(r.status == 1, "50 MB more passed the gate: \(r.output)")
        let failures = r.stdout.split(separator: "\n").filter { $0.hasPrefix("over budget: ") }
        let named = "gate: step 4 `RUN dd if=/dev/urandom of=/big.bin bs=1M count=50 status=none` (new)"
        for figure in ["compressed", "uncompressed", "vm-allocated"] {
            #expect(failures.contains { $0.contains("\(named): \(figure) grew by +50.") }, "\(figure): \(r.stdout)")
        }
        #expect(failures.contains { $0.contains("gate: image: compressed grew by +50.") }, "\(r.stdout)")
        // Nothing else breaches: the steps before it are the same.
        #expect(failures.allSatisfy { $0.contains(named) || $0.contains("gate: image:") }, "\(failures)")
        let xml = JUnitCounter()
        let parser = XMLParser(data: try #require(FileManager.default.contents(atPath: dir.file("junit.xml"))))
        parser.delegate = xml
        #expect(parser.parse(), "junit.xml is not well-formed: \(parser.parserError.map { "\($0)" } ?? "")")
        #expect(xml.failures == failures.count && xml.failingCases == failures.count, "\(xml.failures) failures in junit.xml")
    }

    @Test func twoCleanBuildsOfTinyUnderOneSourceDateEpochHaveTheSameManifestDigest() throws {
        let dir = try TempDir("build-repro", in: Self.scratch)
        let p = try RunningProcess(try IMGBenchBinary.path(), ["verify-repro", Self.tiny, "--cache", Self.cache, "--output", dir.file("repro"),
                                                            "--progress", "plain", "--format", "json"],
                                   environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        let r = try #require(p.finish(within: 900), "imgbench verify-repro did not finish within 15 minutes")
        #expect(r.status == 0, "exit \(r.status): \(r.stderr.suffix(3000))")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout.prefix(2000))")
        #expect(json["sourceDateEpoch"] as? Int == 1_700_000_000)
        let oci = try #require(json["oci"] as? [String: Any])
        let manifests = try #require(oci["manifestDigests"] as? [String])
        #expect(oci["identical"] as? Bool == true && manifests.count == 2 && manifests[0] == manifests[1], "\(oci)")
        let layers = try #require(oci["layers"] as? [[String: Any]])
        #expect(layers.count == 4 && layers.allSatisfy { $0["identical"] as? Bool == true }, "\(layers)")
        // The builds' own reports agree, and each was a build without the step cache.
        for name in ["first", "second"] {
            let report = try readReport(dir.file("repro/\(name)"))
            #expect(report.outputs.imageDigest == manifests[0], "\(name): \(report.outputs.imageDigest ?? "none")")
            let hits = report.steps.flatMap { [$0.container, $0.vm].compactMap { $0 } }.filter(\.cacheHit)
            #expect(hits.isEmpty, "\(name): steps came from the cache")
        }
        // skopeo sees the same digest in both layouts.
        for name in ["first", "second"] {
            let inspect = try HostTool.run("skopeo", package: "skopeo", ["inspect", "oci:\(dir.file("repro/\(name)"))/oci:tiny"])
            let digest = ((try? JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8))) as? [String: Any])?["Digest"] as? String
            #expect(digest == manifests[0], "skopeo on \(name): \(inspect.output.prefix(300))")
        }
        // The VM side: identical, or every differing cluster is accounted for by named owners.
        let vm = try #require(json["vm"] as? [String: Any])
        let clusters = try #require(vm["differingClusters"] as? [Int])
        let owners = try #require(vm["owners"] as? [[String: Any]])
        // The base disk (mkfs.ext4 -d from the cached root) is the same bit for bit.
        let links = try #require(vm["links"] as? [[String: Any]])
        #expect(links.count == 5 && links.first?["step"] as? String == "base" && links.first?["identical"] as? Bool == true, "\(links)")
        if vm["identical"] as? Bool == true {
            #expect(clusters.isEmpty && owners.isEmpty)
        } else {
            // An inode-table block counts once for each of its inodes that differs.
            let blocks = owners.compactMap { $0["blocks"] as? Int }.reduce(0, +)
            #expect(blocks >= (vm["differingBlocks"] as? Int ?? .max) && blocks > 0, "\(owners)")
            #expect(owners.allSatisfy { !(($0["what"] as? String) ?? "").isEmpty })
            // qemu-img agrees that the disks differ.
            let cmp = try Qemu.img("compare", "\(dir.file("repro/first"))/vm/disk.qcow2", "\(dir.file("repro/second"))/vm/disk.qcow2")
            #expect(cmp.status == 1, "qemu-img compare: \(cmp.output)")
        }
        expectNothingLeft(under: [Self.cache, dir.path], marker: "verify-repro-\(p.pid)")
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: dir.file("repro")))?.filter { $0.hasSuffix(".raw") } ?? []
        #expect(leftovers.isEmpty, "raw copies left: \(leftovers)")
    }
}
