import ArgumentParser
import Foundation
import Gate
import QcowIO
import Registry

/// `imgbench report FILE…`: the tables of the papers (Sharma et al., Middleware 2016; Felter et al., IBM 2014) from build reports and measure results.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Render build reports and measure results as the tables of Sharma et al. (Middleware 2016) and Felter et al. (IBM 2014): Markdown on stdout, and an SVG chart per table.",
        discussion: """
            Each FILE is a report.json of imgbench build, the JSON of imgbench measure clone, \
            cow or wasted, or the JSON of imgbench run (--output FILE or --format json). Tables: \
            build time and image size (containers beside VMs), incremental size of one more \
            instance and copy-on-write write overhead (driver beside driver), wasted bytes, and \
            the runtime workloads natively, in the container and in the VM with their ratios to \
            native. --svg DIR writes one chart per table into DIR; --html FILE one \
            self-contained page of every table and chart (readable offline). Charts use a \
            logarithmic axis where the values span decades, draw the rounds' spread as error \
            bars, and say under them where and when the results were made.
            """)

    @Argument(help: "Result files (report.json, measure results, run results), or REGISTRY/REPO:TAG: an image whose report imgbench push attached.",
              transform: { try ReportLocation($0) })
    var files: [ReportLocation]
    @Option(help: "Write one SVG chart per table into this folder.", transform: absolutePath) var svg: String?
    @Option(help: "Write one self-contained HTML page of every table and chart to this file.", transform: absolutePath) var html: String?
    @OptionGroup(title: "Registry (REGISTRY/REPO:TAG)") var registry: RegistryAccessFlags

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one result file") }
    }

    func run() throws {
        var book = ReportBook()
        do {
            for f in files { try book.add(try f.read(registry), path: f.name) }
        } catch let e where isReported(e) || e is RegistryError {
            printErr("imgbench: error: \(e)")
            throw ExitCode(2)
        }
        printOut(book.markdown())
        if let svg {
            try FileManager.default.createDirectory(atPath: svg, withIntermediateDirectories: true)
            for t in book.tables where t.charted {
                let path = "\(svg)/\(ReportBook.fileName(t))"
                try book.svgFile(t).write(toFile: path, atomically: true, encoding: .utf8)
                printErr("wrote \(path)")
            }
        }
        if let html {
            try book.html().write(toFile: html, atomically: true, encoding: .utf8)
            printErr("wrote \(html)")
        }
    }
}
