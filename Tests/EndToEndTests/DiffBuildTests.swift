import Foundation
import Testing
import TestSupport

// `imgbench diff` and the check's breach contributors on real builds (issue 18): a recipe
// whose second version installs one more package and deletes a file.
extension BuildTests {
    @Test func diffOfTwoBuildsNamesTheNewPackageAndTheDeletedFileOnBothSides() throws {
        let dir = try TempDir("build-diff", in: Self.scratch)
        let first = Self.head + "RUN echo kept > /etc/kept && echo doomed > /etc/doomed\n"
        let second = first + "RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/* && rm /etc/doomed\n"
        try FileManager.default.createDirectory(atPath: dir.file("a"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir.file("b"), withIntermediateDirectories: true)
        for (side, text) in [("a", first), ("b", second)] {
            let recipe = try writeRecipe(dir, "\(side)/diffed", text)
            // The second build against the first: its report carries the update delta.
            let r = try build(recipe, output: dir.file("out-\(side)"), arguments: side == "b" ? ["--baseline", dir.file("out-a")] : [])
            try #require(r.status == 0, "build \(side): \(r.stderr.suffix(3000))")
            #expect(side == "a" || r.stdout.contains("update from \(dir.file("out-a")): container: 1 new layers"), "\(r.stdout.suffix(600))")
        }
        let refused = try build(dir.file("b/diffed"), output: dir.file("out-b"), arguments: ["--baseline", dir.file("out-b")])
        #expect(refused.status == 2 && refused.stderr.contains("the baseline is the output folder"), "\(refused.stderr.suffix(500))")
        var r = try imgbench("diff", dir.file("out-a"), dir.file("out-b"), "--format", "json", "--scratch", dir.file("scratch"))
        try #require(r.status == 0, "\(r.output)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let packages = try #require(json["packages"] as? [[String: Any]])
        #expect(packages.contains { $0["name"] as? String == "hello" && $0["change"] as? String == "added" }, "\(packages)")
        let step = try #require((json["steps"] as? [[String: Any]])?.first?["files"] as? [[String: Any]])
        #expect(step.contains { $0["path"] as? String == "etc/doomed" && $0["newKind"] as? String == "whiteout" }, "the step deletes it")
        #expect(step.contains { $0["path"] as? String == "usr/bin/hello" && $0["change"] as? String == "added" })
        let vm = try #require(json["vm"] as? [String: Any])
        #expect((vm["packages"] as? [[String: Any]])?.contains { $0["name"] as? String == "hello" && $0["change"] as? String == "added" } == true)
        let vmFiles = try #require(vm["files"] as? [[String: Any]])
        #expect(vmFiles.contains { $0["path"] as? String == "etc/doomed" && $0["change"] as? String == "removed" }, "\(vmFiles.prefix(5))")
        #expect(vmFiles.contains { $0["path"] as? String == "usr/bin/hello" && $0["change"] as? String == "added" })
        let update = try #require(json["update"] as? [String: Any])
        #expect(update["containerNewLayers"] as? Int == 1 && (update["vmClusters"] as? Int ?? 0) > 0, "\(update)")
        let built = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("out-b/report.json")))) as? [String: Any])
        let inReport = try #require(built["update"] as? [String: Any], "build --baseline writes the update into report.json")
        for k in ["containerNewLayers", "containerBytes", "containerFullBytes", "vmClusters"] {
            #expect(inReport[k] as? Int == update[k] as? Int, "\(k): \(inReport) vs \(update)")
        }
        // Markdown for a pull request; and check names the files that grew the step.
        r = try imgbench("diff", dir.file("out-a"), dir.file("out-b"), "--format", "markdown", "--container-only")
        #expect(r.status == 0 && r.stdout.contains("| hello | added | - |"), "\(r.output)")
        r = try imgbench("check", dir.file("out-b/report.json"), "--baseline", dir.file("out-a/report.json"), "--junit", dir.file("junit.xml"))
        #expect(r.status == 1 && r.stdout.contains("grew most: "), "\(r.output)")
        let junit = String(decoding: try #require(FileManager.default.contents(atPath: dir.file("junit.xml"))), as: UTF8.self)
        #expect(junit.contains("grew most: "), "the JUnit failure carries the contributors")
        // The same check against a baseline pushed to a registry, whose second step differs (so
        // its layer is fetched from there): the same contributors as with the baseline's layout.
        if LocalRegistry.isAvailable {
            let third = try writeRecipe(dir, "c/diffed", first + "RUN echo small > /etc/small\n")
            let c = try build(third, output: dir.file("out-c"), arguments: ["--images", "container"])
            try #require(c.status == 0, "build c: \(c.stderr.suffix(3000))")
            func contributors(_ r: ProcessResult) -> [String] {
                r.stdout.split(separator: "\n").compactMap { l in l.range(of: "grew most: ").map { String(l[$0.lowerBound...]) } }
            }
            let local = try imgbench("check", dir.file("out-b/report.json"), "--baseline", dir.file("out-c/report.json"))
            #expect(local.status == 1 && !contributors(local).isEmpty, "\(local.output)")
            let registry = try LocalRegistry()
            let ref = "\(registry.address)/imgbench/diffed:c"
            let pushed = try imgbench("push", dir.file("out-c"), ref, "--progress", "quiet")
            try #require(pushed.status == 0, "\(pushed.output)")
            let remote = try imgbench("check", dir.file("out-b/report.json"), "--baseline", ref)
            #expect(remote.status == 1 && contributors(remote) == contributors(local), "\(remote.output)\nlocal: \(local.output)")
        }

        // An unchanged rebuild (all cache hits): no layer to download; the VM side is counted.
        let again = try build(dir.file("a/diffed"), output: dir.file("out-a2"))
        try #require(again.status == 0, "\(again.stderr.suffix(2000))")
        r = try imgbench("diff", dir.file("out-a"), dir.file("out-a2"), "--format", "json", "--scratch", dir.file("scratch"))
        let same = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let delta = try #require(same["update"] as? [String: Any])
        #expect(delta["containerNewLayers"] as? Int == 0 && delta["containerBytes"] as? Int == 0, "\(delta)")
        #expect((delta["vmBytes"] as? Int ?? .max) < (delta["vmFullBytes"] as? Int ?? 0), "\(delta)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.file("scratch")).isEmpty)
    }
}
