import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import TestSupport

/// `imgbench check` on reports written here in report.json's structure (no build, no root): exit
/// statuses, the failure text, JUnit XML that an XML parser accepts with one failing test case per
/// breach, and errors that name the file and the place.
struct GateCommandTests {
    /// A report.json as `imgbench build` writes it: each step's `bytes` on both sides (nil: a
    /// metadata step).
    static func report(_ steps: [(String, UInt64?)], recipe: String = "t") -> [String: Any] {
        func measure(_ b: UInt64) -> [String: Any] {
            ["seconds": 1.0, "cacheHit": false, "layerCompressedBytes": b / 2, "layerUncompressedBytes": b, "qcow2AllocatedBytes": b,
             "wasted": ["overwrittenLaterBytes": 0]]
        }
        var list: [[String: Any]] = []
        var sum: UInt64 = 100 << 20
        for (i, (text, bytes)) in steps.enumerated() {
            var s: [String: Any] = ["index": i + 1, "instruction": text, "location": "\(recipe)/Containerfile:\(i + 2):1",
                                    "target": "both", "key": String(repeating: "\(i % 10)", count: 64), "changesFiles": bytes != nil]
            if let bytes {
                s["container"] = measure(bytes)
                s["vm"] = measure(bytes)
                sum += bytes
            }
            list.append(s)
        }
        return [
            "schemaVersion": 1, "recipe": recipe, "recipeFile": "\(recipe)/Containerfile", "targets": ["container", "vm"],
            "startedAt": "2026-01-01T00:00:00Z",
            "base": ["description": "debian:bookworm minbase (mmdebstrap)", "key": String(repeating: "b", count: 64),
                     "container": measure(100 << 20), "vm": measure(100 << 20)],
            "steps": list,
            "totals": ["seconds": 1.0, "cacheHits": 0, "cacheMisses": 1, "imageCompressedBytes": sum / 2, "imageUncompressedBytes": sum,
                       "vmFlattenedAllocatedBytes": sum, "wasted": ["overwrittenLaterBytes": 0]],
            "outputs": ["folder": "out/\(recipe)"],
        ]
    }

    static func write(_ json: [String: Any], _ path: String) throws {
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
    }

    static let baseline: [(String, UInt64?)] = [
        ("ENV A=1", nil), ("LABEL x=1", nil), ("RUN apt-get install -y curl", 10 << 20), ("COPY app /app", 1 << 20), ("CMD [\"/app/run\"]", nil),
    ]

    @Test func withinBudgetExits0AndOverBudgetExits1NamingTheStep() throws {
        let dir = try TempDir("gate")
        try Self.write(Self.report(Self.baseline), dir.file("baseline.json"))
        try Self.write(Self.report(Self.baseline), dir.file("same.json"))
        var r = try imgbench("check", dir.file("same.json"), "--baseline", dir.file("baseline.json"))
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("within budget"), "\(r.stdout)")

        // A step adding 50 MB between curl and COPY, and LABEL/ENV swapped.
        var grown = Self.baseline
        grown.swapAt(0, 1)
        grown.insert(("RUN dd if=/dev/urandom of=/big bs=1M count=50", 50 << 20), at: 3)
        try Self.write(Self.report(grown), dir.file("grown.json"))
        r = try imgbench("check", dir.file("grown.json"), "--baseline", dir.file("baseline.json"))
        #expect(r.status == 1, "\(r.output)")
        let failures = r.stdout.split(separator: "\n").filter { $0.hasPrefix("over budget: ") }
        // compressed, uncompressed and vm-allocated of the new step, and the same three of the image.
        #expect(failures.count == 6, "\(r.stdout)")
        #expect(failures.contains { $0.contains("t: step 4 `RUN dd if=/dev/urandom of=/big bs=1M count=50` (new): uncompressed grew by +50.0 MiB") },
                "\(r.stdout)")
        #expect(failures.allSatisfy { $0.contains("limit 1.0 MiB or 1% allows") }, "\(r.stdout)")
        #expect(!r.stdout.contains("LABEL x=1`: new") && !r.stdout.contains("[removed]"), "a reordered LABEL is not a new step: \(r.stdout)")

        // A budget that allows it.
        try "recipes:\n  t:\n    steps:\n      \"RUN dd\": {bytes: 60MiB}\n    image: {bytes: 60MiB}\n".write(toFile: dir.file("budget.yaml"), atomically: true, encoding: .utf8)
        r = try imgbench("check", dir.file("grown.json"), "--baseline", dir.file("baseline.json"), "--budget", dir.file("budget.yaml"))
        #expect(r.status == 0, "\(r.output)")

        // JSON says the same.
        r = try imgbench("check", dir.file("grown.json"), "--baseline", dir.file("baseline.json"), "--format", "json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["withinBudget"] as? Bool == false && json["breaches"] as? Int == 6, "\(r.stdout.prefix(500))")
        let steps = try #require(json["steps"] as? [[String: Any]])
        #expect(steps.filter { $0["status"] as? String == "new" }.count == 1)
    }

    @Test func junitIsValidXMLWithOneFailingTestCasePerBreach() throws {
        let dir = try TempDir("gate-junit")
        // Text that XML must escape, in a step that breaches.
        let awkward = "RUN printf '<a href=\"x\">&amp;</a>\\n' > /x.html && dd if=/dev/zero of=/pad bs=1M count=3 # \u{1}"
        var old = Self.baseline, new = Self.baseline
        old.insert((awkward, 1 << 20), at: 3)
        new.insert((awkward, 4 << 20), at: 3)
        try Self.write(Self.report(old), dir.file("baseline.json"))
        try Self.write(Self.report(new), dir.file("report.json"))
        let r = try imgbench("check", dir.file("report.json"), "--baseline", dir.file("baseline.json"), "--format", "junit",
                             "--junit", dir.file("junit.xml"))
        #expect(r.status == 1, "\(r.output)")
        let file = try #require(FileManager.default.contents(atPath: dir.file("junit.xml")))
        #expect(String(decoding: file, as: UTF8.self).trimmingCharacters(in: .newlines) == r.stdout.trimmingCharacters(in: .newlines), "--junit FILE and --format junit write the same XML")
        let xml = JUnitCounter()
        let parser = XMLParser(data: file)
        parser.delegate = xml
        #expect(parser.parse(), "not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "")\n\(r.stdout)")
        // The breaches: the step's three figures; the image grows by 3 MiB of 123 MiB, over 1 MiB and 1 %.
        let json = try #require(try JSONSerialization.jsonObject(with: Data(try imgbench(
            "check", dir.file("report.json"), "--baseline", dir.file("baseline.json"), "--format", "json").stdout.utf8)) as? [String: Any])
        let checks = try #require(json["checks"] as? [[String: Any]])
        #expect(xml.testcases == checks.count && xml.testcases > 0)
        #expect(xml.failures == json["breaches"] as? Int, "\(xml.failures) failures")
        #expect(xml.failingCases == xml.failures, "one failure per failing test case")
        #expect(xml.suiteFailures == "\(xml.failures)" && xml.suiteTests == "\(xml.testcases)")
        #expect(xml.failureMessages.contains { $0.contains(awkward.replacingOccurrences(of: "\u{1}", with: "\u{FFFD}")) },
                "the step's text survives escaping: \(xml.failureMessages)")
    }

    @Test func errorsExit2NamingTheFileAndThePlace() throws {
        let dir = try TempDir("gate-errors")
        try Self.write(Self.report(Self.baseline), dir.file("baseline.json"))
        // Missing file.
        var r = try imgbench("check", dir.file("missing.json"), "--baseline", dir.file("baseline.json"))
        #expect(r.status == 2 && r.stderr.contains("\(dir.file("missing.json")): no such file"), "\(r.output)")
        // A field of the wrong type.
        var bad = Self.report(Self.baseline)
        var steps = bad["steps"] as! [[String: Any]]
        steps[2]["key"] = 7
        bad["steps"] = steps
        try Self.write(bad, dir.file("bad.json"))
        r = try imgbench("check", dir.file("bad.json"), "--baseline", dir.file("baseline.json"))
        #expect(r.status == 2 && r.stderr.contains("\(dir.file("bad.json")): at steps[2].key: expected a string"), "\(r.output)")
        // Not JSON.
        try "{\"schemaVersion\": 1,".write(toFile: dir.file("cut.json"), atomically: true, encoding: .utf8)
        r = try imgbench("check", dir.file("baseline.json"), "--baseline", dir.file("cut.json"))
        #expect(r.status == 2 && r.stderr.contains("\(dir.file("cut.json")): at the top: not JSON"), "\(r.output)")
        // Another recipe's baseline.
        try Self.write(Self.report(Self.baseline, recipe: "other"), dir.file("other.json"))
        r = try imgbench("check", dir.file("baseline.json"), "--baseline", dir.file("other.json"))
        #expect(r.status == 2 && r.stderr.contains("baseline is of recipe 'other'"), "\(r.output)")
        // A budget that does not parse.
        try "default:\n  bytes: ten\n".write(toFile: dir.file("budget.yaml"), atomically: true, encoding: .utf8)
        r = try imgbench("check", dir.file("baseline.json"), "--baseline", dir.file("baseline.json"), "--budget", dir.file("budget.yaml"))
        #expect(r.status == 2 && r.stderr.contains("\(dir.file("budget.yaml")):2:10: bytes: 'ten' is not a size"), "\(r.output)")
    }
}

/// Counts test cases and failures of a JUnit file.
final class JUnitCounter: NSObject, XMLParserDelegate {
    var testcases = 0
    var failures = 0
    var failingCases = 0
    var suiteTests: String?
    var suiteFailures: String?
    var failureMessages: [String] = []
    private var caseFailed = false

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        switch name {
        case "testsuite":
            suiteTests = attributes["tests"]
            suiteFailures = attributes["failures"]
        case "testcase":
            testcases += 1
            caseFailed = false
        case "failure":
            failures += 1
            if !caseFailed { failingCases += 1 }
            caseFailed = true
            failureMessages.append(attributes["message"] ?? "")
        default: break
        }
    }
}
