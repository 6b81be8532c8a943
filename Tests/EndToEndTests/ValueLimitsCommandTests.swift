import Foundation
import OCI
import Testing
import TestSupport

/// Issue 13: values on the command line and in the files it reads that crashed imgbench (a trap,
/// exit 132 or 139) now give one `imgbench: error:` line naming the file and the place, or, for an
/// option, the usage error (exit 64) naming the option.
struct ValueLimitsCommandTests {
    /// One error line that names `names` and says `says`, and the exit status `status`.
    func expectOneLine(_ r: ProcessResult, status: Int32, names: String, says: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status == status, "exit \(r.status): \(r.output)", sourceLocation: sourceLocation)
        #expect(r.errorLines.count == 1, "one line on stderr: \(r.stderr)", sourceLocation: sourceLocation)
        let line = String(r.errorLines.first ?? "")
        #expect(line.hasPrefix("imgbench: error: ") && line.contains(names) && line.contains(says), "\(line)", sourceLocation: sourceLocation)
    }

    @Test func qcowCreateRefusesSizesAndWidthsPastTheFormat() throws {
        let dir = try TempDir("qcow-values")
        let img = dir.file("x.qcow2")
        expectOneLine(try imgbench("qcow", "create", img, "18446744073709551615"), status: 1, names: "virtual size", says: "L1 table")
        #expect(!FileManager.default.fileExists(atPath: img), "nothing is left behind")
        let huge = try imgbench("qcow", "create", img, "1M", "--cluster-size", "18446744073709551615")
        #expect(huge.status == 64 && huge.stderr.contains("--cluster-size"), "exit \(huge.status): \(huge.output)")
        // Int.min has one bit set, as a power of two has: it passed for a width.
        expectOneLine(try imgbench("qcow", "create", img, "1M", "--refcount-bits=-9223372036854775808"), status: 1,
                      names: "refcount bits -9223372036854775808", says: "power of two from 1 to 64")
        let raw = dir.file("x.raw")
        _ = FileManager.default.createFile(atPath: raw, contents: Data(count: 4096))
        for (option, value) in [("--cluster-size", "18446744073709551615"), ("--threads", "9223372036854775807"), ("--threads", "0")] {
            let r = try imgbench("qcow", "convert", raw, dir.file("y.qcow2"), option, value)
            #expect(r.status == 64 && r.stderr.contains(option), "\(option) \(value): exit \(r.status): \(r.output)")
        }
    }

    @Test func ociCommandsNameTheManifestAndThePathOfANegativeSize() throws {
        let dir = try TempDir("oci-values")
        let layout = try ImageLayout.create(at: dir.file("layout"))
        let config = try layout.putJSON(ImageConfig(), mediaType: MediaType.imageConfig)
        let layer = try layout.blobs.put(Data("layer".utf8), mediaType: MediaType.layerGzip)
        let m = try layout.putJSON(Manifest(config: config, layers: [Descriptor(mediaType: MediaType.layerGzip, digest: layer.digest, size: -1)]),
                                   mediaType: MediaType.imageManifest)
        try layout.tag(m, as: "bad")
        let blob = layout.blobs.path(of: m.digest)
        expectOneLine(try imgbench("oci", "inspect", dir.file("layout") + ":bad"), status: 1, names: blob, says: "at layers[0].size: size -1 is negative")
        expectOneLine(try imgbench("oci", "ls", dir.file("layout")), status: 1, names: blob, says: "at layers[0].size")
    }

    @Test func checkNamesTheBudgetLineAndTheReportPath() throws {
        let dir = try TempDir("check-values")
        let baseline = dir.file("baseline.json")
        try GateCommandTests.write(GateCommandTests.report(GateCommandTests.baseline), baseline)
        let budgets = [
            ("default: " + String(repeating: "[", count: 100_000) + "\n", ":1: ", "nested more than"),
            ((0..<3000).map { String(repeating: " ", count: $0 % 60) + "k\($0):" }.joined(separator: "\n") + " 1\n", ":", "nested more than"),
            ("default:\n  percent: 1e20%\n", ":2:12: ", "more than a limit can be"),
        ]
        for (text, place, says) in budgets {
            try text.write(toFile: dir.file("budget.yaml"), atomically: true, encoding: .utf8)
            let r = try imgbench("check", baseline, "--baseline", baseline, "--budget", dir.file("budget.yaml"))
            expectOneLine(r, status: 2, names: dir.file("budget.yaml") + place, says: says)
        }
        var json = GateCommandTests.report(GateCommandTests.baseline)
        var totals = try #require(json["totals"] as? [String: Any])
        for (value, says) in [(-1.0, "is negative"), (0.5, "not a whole number"), (1e20, "past 2^64")] {
            totals["imageCompressedBytes"] = value
            json["totals"] = totals
            try GateCommandTests.write(json, dir.file("bad.json"))
            let r = try imgbench("check", dir.file("bad.json"), "--baseline", baseline)
            expectOneLine(r, status: 2, names: dir.file("bad.json") + ": at totals.imageCompressedBytes: ", says: says)
        }
    }
}
