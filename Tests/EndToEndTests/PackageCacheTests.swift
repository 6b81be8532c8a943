import Foundation
import Testing
import TestSupport

// The package cache (issue 17): apt's downloads go through imgbench's cache, once for both sides,
// every step and later builds, and nothing of it reaches the image.
extension BuildTests {
    /// A step's package traffic on one side, from report.json.
    struct Traffic {
        var downloadedFiles = 0, fromCacheFiles = 0
        init(_ m: Any?) {
            let p = (m as? [String: Any])?["packages"] as? [String: Any]
            downloadedFiles = p?["downloadedFiles"] as? Int ?? 0
            fromCacheFiles = p?["fromCacheFiles"] as? Int ?? 0
        }
    }

    @Test func aPackageIsDownloadedOnceForBothSidesAndForALaterBuildOfAChangedStep() throws {
        let dir = try TempDir("build-packages", in: Self.scratch)
        let word = "\(UInt32.random(in: 0...UInt32.max))"
        for round in 1...2 {
            let recipe = try writeRecipe(dir, "r\(round)/packaged", Self.head + """
                RUN apt-get update && apt-get install -y --no-install-recommends hello && rm -rf /var/lib/apt/lists/* && echo \(word)-\(round) > /etc/round && echo "apt config: $APT_CONFIG"

                """)
            let r = try build(recipe, output: dir.file("out-\(round)"))
            try #require(r.status == 0, "build \(round): \(r.stderr.suffix(3000))")
            #expect(r.stderr.contains("apt config: /dev/imgbench-package-cache.conf"), "the step names the cache's configuration")
            let report = try readJSON(dir.file("out-\(round)/report.json"))
            let step = try #require((report["steps"] as? [[String: Any]])?.last)
            let (c, v) = (Traffic(step["container"]), Traffic(step["vm"]))
            if round == 1 {
                // Each kept file the step asks for is downloaded by one side at most (or came from
                // an earlier build): never twice.
                let asked = c.downloadedFiles + c.fromCacheFiles + v.downloadedFiles + v.fromCacheFiles
                #expect(asked >= 2 && 2 * (c.downloadedFiles + v.downloadedFiles) <= asked, "container \(c), vm \(v)")
            } else {
                // The same packages for a step that changed: all from the cache, on both sides.
                #expect(c.downloadedFiles == 0 && v.downloadedFiles == 0 && c.fromCacheFiles >= 1 && v.fromCacheFiles >= 1, "container \(c), vm \(v)")
            }
            // Nothing of the cache in the layer: no /dev entry, no configuration file.
            let listing = try layerListing(dir.file("out-\(round)"))
            #expect(listing.contains("usr/bin/hello") && !listing.contains { $0.hasPrefix("dev/") || $0.contains("imgbench-package-cache") }, "\(listing.prefix(20))")
        }
        // Without the cache: the step downloads as a build alone would, and says so nowhere.
        let recipe = try writeRecipe(dir, "r3/packaged", Self.head + "RUN apt-get update && apt-get install -y --no-install-recommends hello && echo \(word)-3 && echo \"apt config: [$APT_CONFIG]\"\n")
        let r = try build(recipe, output: dir.file("out-3"), arguments: ["--no-package-cache"])
        try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        #expect(r.stderr.contains("apt config: []"))
        let report = try readJSON(dir.file("out-3/report.json"))
        #expect((report["totals"] as? [String: Any])?["packages"] == nil)
    }

    /// Behind a site's apt-cacher-ng (`http_proxy`): the package cache reaches the archive
    /// through it and the report says so; a proxy it cannot speak to is refused before anything
    /// is built.
    @Test(.enabled(if: AptCacherNg.isAvailable, "needs apt-cacher-ng (scripts/install-deps.sh)"))
    func theArchiveIsReachedThroughASitesAptCacherNg() throws {
        let site = try AptCacherNg()
        defer { site.stop() }
        let dir = try TempDir("build-upstream-proxy", in: Self.scratch)
        let word = "through-\(UInt32.random(in: 0...UInt32.max))"
        let recipe = try writeRecipe(dir, "through/proxied", Self.head
            + "RUN apt-get update && apt-get download hello && ls hello_*.deb && rm hello_*.deb && rm -rf /var/lib/apt/lists/* && echo \(word)\n")
        let r = try build(recipe, output: dir.file("out"), environment: ["http_proxy": site.url, "no_proxy": ""], arguments: ["--images", "container"])
        try #require(r.status == 0, "\(r.stderr.suffix(3000))\n\(site.output)")
        let totals = try #require(try readJSON(dir.file("out/report.json"))["totals"] as? [String: Any])
        #expect(totals["packagesThrough"] as? String == site.url)
        // InRelease is never kept by imgbench's cache: every apt-get update asks the site's proxy.
        let transfers = site.transfers
        #expect(transfers.contains { $0.hasSuffix("|deb.debian.org/debian/dists/bookworm/InRelease") }, "\(transfers.suffix(10))")

        let bad = try build(recipe, output: dir.file("bad"), environment: ["http_proxy": "https://proxy.example:3128"], arguments: ["--images", "container"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("http_proxy: 'https://proxy.example:3128' is not an http:// proxy"), "\(bad.stderr.suffix(1500))")
        #expect(!FileManager.default.fileExists(atPath: dir.file("bad/report.json")))
    }

    /// The paths of the image's last layer.
    func layerListing(_ out: String) throws -> [String] {
        let index = try readJSON("\(out)/oci/index.json")
        let manifest = try #require(((index["manifests"] as? [[String: Any]])?.first?["digest"] as? String)?.dropFirst("sha256:".count))
        let layers = try #require(try readJSON("\(out)/oci/blobs/sha256/\(manifest)")["layers"] as? [[String: Any]])
        let last = try #require((layers.last?["digest"] as? String)?.dropFirst("sha256:".count))
        let r = try sh("tar tzf '\(out)/oci/blobs/sha256/\(last)'")
        return r.output.split(separator: "\n").map(String.init)
    }
}

// Both images at once (issue 17): a failure on one side stops the other, and --serial keeps one
// side after the other.
extension BuildTests {
    @Test func aStepThatFailsOnOneSideStopsTheOtherAndLeavesNothing() throws {
        let dir = try TempDir("build-sides", in: Self.scratch)
        let mark = "sides-\(UInt32.random(in: 0...UInt32.max))"
        let recipe = try writeRecipe(dir, "sides", Self.head + """
            RUN echo \(mark) > /etc/mark
            RUN --target=container echo failing-on-the-container-side && exit 7
            RUN echo after > /etc/after

            """)
        let out = dir.file("out")
        let r = try build(recipe, output: out)
        #expect(r.status != 0)
        #expect(r.stderr.contains("Containerfile:5"), "the failed step is named at its line: \(r.stderr.suffix(1500))")
        #expect(r.stderr.contains("[container 2/3]"))
        // The VM side stopped before its next step: it never reached the last step or the
        // finalisation (its base disk and first step take longer than the container's two steps).
        #expect(!r.stderr.contains("[vm 3/3]") && !r.stderr.contains("[vm final]"), "\(r.stderr.suffix(2000))")
        #expect(!FileManager.default.fileExists(atPath: out) && !FileManager.default.fileExists(atPath: out + ".partial"))
        expectNothingLeft(under: [Self.cache, dir.path], marker: mark)
        #expect(!Self.runcContainers().contains { $0.contains("-\(getpid())-") })

        // --serial: the container side's steps all come before the VM side's, and the report says so.
        let ok = try writeRecipe(dir, "serial", Self.head + "RUN echo \(mark)-serial > /etc/mark\n")
        let s = try build(ok, output: dir.file("serial-out"), arguments: ["--serial"])
        try #require(s.status == 0, "\(s.stderr.suffix(2000))")
        let c = try #require(s.stderr.range(of: "[container 1/1]")), v = try #require(s.stderr.range(of: "[vm 1/1]"))
        #expect(c.lowerBound < v.lowerBound && !s.stderr.contains("[vm] "), "serial output is not marked by side")
        let report = try readJSON(dir.file("serial-out/report.json"))
        #expect((report["totals"] as? [String: Any])?["sides"] as? String == "serial")
        let both = try build(ok, output: dir.file("both-out"))
        try #require(both.status == 0)
        #expect((try readJSON(dir.file("both-out/report.json"))["totals"] as? [String: Any])?["sides"] as? String == "concurrent")
    }
}
