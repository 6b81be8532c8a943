import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import Gate
@testable import ImageBuild
import Layers
import OCI
@testable import Measure
@testable import RuntimeSuite
import RecipePlan

@Suite("imgbench report")
struct ReportTests {
    func write(_ json: String, _ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "/imgbench-report-\(getpid())-\(name).json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func sampleFiles() throws -> [String] {
        let m = #"{"seconds": 1.5, "cacheHit": false}"#
        let build = """
            {"schemaVersion": 1, "recipe": "mysql", "recipeFile": "Recipes/mysql/Containerfile", "targets": ["container", "vm"],
             "startedAt": "2026-11-22T00:00:00Z", "base": {"description": "debian", "key": "k", "container": \(m), "vm": \(m)},
             "steps": [], "totals": {"seconds": 60, "containerSeconds": 20.5, "vmSeconds": 30.25, "containerBuiltSeconds": 200, "vmBuiltSeconds": 300.5, "cacheHits": 0, "cacheMisses": 2,
             "imageCompressedBytes": 1000000, "imageUncompressedBytes": 3000000, "vmFlattenedAllocatedBytes": 5000000,
             "vmChainAllocatedBytes": 6000000}, "outputs": {"folder": "out/mysql"}}
            """
        func s(_ v: Double) -> String { #"{"min": \#(v), "median": \#(v), "max": \#(v), "samples": 1}"# }
        let clone = """
            {"schemaVersion": 1, "kind": "clone", "recipe": "mysql", "image": "out/mysql", "count": 1, "repeats": 1, "rows": [
             {"kind": "container", "storage": "overlay", "available": true, "bytes": \(s(12288)), "milliseconds": \(s(5)), "fullCopy": false},
             {"kind": "container", "storage": "aufs", "available": false, "reason": "no aufs", "fullCopy": false},
             {"kind": "vm", "storage": "qcow2 overlay", "available": true, "bytes": \(s(196608)), "milliseconds": \(s(3)), "fullCopy": false}]}
            """
        let cow = """
            {"schemaVersion": 1, "kind": "cow", "workload": "dist-upgrade", "recipe": "r", "step": "s", "repeats": 1, "rows": [
             {"kind": "baseline", "storage": "plain folder", "available": true, "seconds": \(s(100)), "ratio": \(s(1))},
             {"kind": "container", "storage": "overlay <fast & \\"good\\">", "available": true, "seconds": \(s(110)), "ratio": \(s(1.1))},
             {"kind": "vm", "storage": "qcow2 overlay", "available": true, "seconds": \(s(130)), "ratio": \(s(1.3))}]}
            """
        return [try write(build, "build"), try write(clone, "clone"), try write(cow, "cow")]
    }

    @Test("build reports and measure results become the papers' tables, containers beside VMs")
    func markdown() throws {
        var book = ReportBook()
        for f in try sampleFiles() { try book.add(file: f) }
        #expect(book.tables.map(\.title) == ["Build time", "Image size", "Incremental size of one more instance",
                                             "Write overhead of copy-on-write", "Write overhead: wall time"])
        let md = book.markdown()
        #expect(md.contains("| mysql | 20.5 s | 30.2 s | - | 200.0 s | 300.5 s |"), "this build's time beside what the steps cost when built: \(md)")
        #expect(md.contains("| mysql | 12.0 KiB | 192.0 KiB |"), "unavailable drivers are not columns: \(md)")
        #expect(md.contains("| dist-upgrade | 1.00x | 1.10x | 1.30x |"))
    }

    @Test("each chart is well-formed XML and names every series")
    func svgParses() throws {
        var book = ReportBook()
        for f in try sampleFiles() { try book.add(file: f) }
        for t in book.tables {
            let svg = book.svg(t)
            final class Texts: NSObject, XMLParserDelegate {
                var texts: [String] = []
                var current = ""
                var inText = false
                func parser(_ p: XMLParser, didStartElement e: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
                    if e == "text" { inText = true; current = "" }
                }
                func parser(_ p: XMLParser, foundCharacters s: String) { if inText { current += s } }
                func parser(_ p: XMLParser, didEndElement e: String, namespaceURI: String?, qualifiedName: String?) {
                    if e == "text" { texts.append(current); inText = false }
                }
            }
            let parser = XMLParser(data: Data(svg.utf8))
            let d = Texts()
            parser.delegate = d
            #expect(parser.parse(), "\(t.title): \(parser.parserError.map { "\($0)" } ?? "")")
            for series in t.columns { #expect(d.texts.contains(series), "\(t.title): the legend does not name \(series)") }
            for row in t.rows { #expect(d.texts.contains(row.label)) }
        }
    }

    @Test("a chart whose values span decades has a logarithmic axis in one unit; a ratio chart a 1.0x line; rounds give error bars")
    func chartAxes() throws {
        var book = ReportBook()
        for f in try sampleFiles() { try book.add(file: f) }
        let clone = try #require(book.tables.first { $0.title.hasPrefix("Incremental") })
        var svg = book.svg(clone)
        // 12 KiB beside 192 KiB: 16x, linear; the axis names its one unit.
        #expect(svg.contains("linear axis from zero") && svg.contains(">KiB (1 KiB = 1024^1 bytes)<"), "\(svg)")
        var spread = clone
        spread.rows = [("mysql", [12288, 1.6 * 1024 * 1024 * 1024])]
        spread.ranges = [[12000...13000, nil]]
        svg = book.svg(spread)
        #expect(svg.contains("logarithmic axis") && svg.contains(">GiB (1 GiB = 1024^3 bytes)<"), "\(svg)")
        #expect(svg.contains("class=\"error-bar\""), "rounds' spread drawn: \(svg)")
        let ticks = svg.components(separatedBy: "class=\"tick\"").count - 1
        #expect(ticks >= 5, "decade ticks from 1e-5 GiB to 10 GiB: \(ticks)")
        // Every bar has a width: the 12 KiB bar is not drawn as zero beside 1.6 GiB.
        let widths = svg.components(separatedBy: "class=\"bar\"").dropFirst().compactMap { part -> Double? in
            guard let r = part.range(of: "width=\""), let end = part[r.upperBound...].firstIndex(of: "\"") else { return nil }
            return Double(part[r.upperBound..<end])
        }
        #expect(widths.count == 2 && widths.allSatisfy { $0 > 50 }, "\(widths)")
        let cow = try #require(book.tables.first { $0.unit == .ratio })
        #expect(book.svg(cow).contains("class=\"reference\"") && book.svg(cow).contains(">1.0x<"))
        // A long label is not cut: the chart widens for it.
        var long = clone
        long.rows = [(String(repeating: "a-very-long-recipe-name ", count: 6), [1, 2])]
        let width = try #require(book.svg(long).split(separator: "\"").dropFirst(5).first.flatMap { Double($0) })
        #expect(width > 6.8 * Double(long.rows[0].label.count), "\(width)")
    }

    @Test("the HTML page holds every table and every chart, self-contained")
    func htmlPage() throws {
        var book = ReportBook()
        for f in try sampleFiles() { try book.add(file: f) }
        let page = book.html()
        #expect(page.components(separatedBy: "<table>").count - 1 == book.tables.count)
        #expect(page.components(separatedBy: "<svg ").count - 1 == book.tables.filter(\.charted).count)
        #expect(!page.contains("http://") || page.components(separatedBy: "http://").dropFirst().allSatisfy { $0.hasPrefix("www.w3.org/2000/svg") },
                "nothing fetched but the SVG namespace")
        #expect(page.contains("Sharma et al. (Middleware 2016)") && page.contains("Felter et al. (IBM 2014)"))
    }

    @Test("a file that is not a result is refused, naming the file")
    func refusesOtherJSON() throws {
        let path = try write(#"{"kind": "nonsense"}"#, "bad")
        var book = ReportBook()
        #expect(throws: BuildError.self) { try book.add(file: path) }
        do { try book.add(file: path) } catch { #expect("\(error)".contains(path)) }
    }
}
