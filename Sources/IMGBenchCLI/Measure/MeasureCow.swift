import ArgumentParser
import Foundation
import ImageBuild
import Measure
import RecipePlan
import RuntimeSuite

/// `imgbench measure cow --workload W`: the write overhead of copy-on-write storage.
struct MeasureCow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cow",
        abstract: "Run one write-heavy workload on a plain folder, each storage driver, a qcow2 overlay and a raw image; report time, ratio to the plain folder, bytes written and files copied up.",
        discussion: """
            --workload is dist-upgrade, kernel-install or fio-randrw (the recipes of those names \
            in --recipes), or RECIPE[:STEP] for a RUN step of any recipe (the last RUN step by \
            default). The base is the recipe built up to the step before (through the build \
            cache). Package downloads are not timed: every run shares one package cache, filled \
            by an unmeasured warm-up run.
            """)

    @Option(help: "dist-upgrade, kernel-install, fio-randrw, or RECIPE[:STEP].") var workload: String
    @Option(help: "Where the built-in workloads' recipes are.") var recipes = "recipes"
    @Option(help: "Cache folder (the build's; default $XDG_CACHE_HOME/imgbench or ~/.cache/imgbench).", transform: absolutePath) var cache: String?
    @Option(help: "Scratch folder (default: in the cache; removed after).", transform: absolutePath) var workdir: String?
    @Flag(help: "Also run the workload in a booted VM of the base disk (KVM when it works here, else software emulation, said in the result).")
    var bootedVm = false
    @Option(help: "Seconds the booted VM may take before it is stopped.") var vmTimeout: Double = 3600
    @Option(help: "auto (a live display on a terminal, plain lines otherwise), plain, tty or quiet.") var progress: ProgressMode = .auto
    @OptionGroup var rounds: DriverRounds
    @OptionGroup var options: MeasureOptions

    func run() throws {
        let cacheDir = cache ?? absolutePath(BuildOptions.defaultCache)
        let scratch = workdir ?? "\(cacheDir)/measure/cow-\(getpid())"
        let events = TerminalBuildEvents(mode: progress)
        let result = try measuring(scratch) {
            let w: CowMeasurement.Workload
            do {
                w = try CowMeasurement.Workload.resolve(workload, recipes: absolutePath(recipes))
                try RuntimeSuite.Workload.validate(w.recipe)
            } catch let e as RecipeError {
                printErr("imgbench: error: \(e)")
                throw ExitCode(2)
            }
            var m = CowMeasurement(workload: w, drivers: rounds.driverList, repeats: rounds.repeat,
                                   cache: cacheDir, workdir: scratch, events: events)
            m.bootedVM = bootedVm
            m.vmTimeout = vmTimeout
            return try m.run()
        }
        try options.emit(result) { Self.table(result) }
    }

    static func table(_ r: CowMeasurement.Result) -> String {
        var t = TextTable(header: ["side", "storage", "seconds", "ratio", "bytes written", "copied up", "notes"])
        for row in r.rows {
            t.rows.append([row.kind, row.storage, row.seconds?.render { String(format: "%.1f", $0) } ?? "-",
                           row.ratio?.render { String(format: "%.2fx", $0) } ?? "-",
                           row.bytesWritten?.render(bytesText) ?? "-",
                           row.filesCopiedUp?.render { String(Int($0)) } ?? "-",
                           row.available ? (row.kind == "vm" && row.storage.hasPrefix("booted") ? row.note ?? "" : "") : "unavailable: \(row.reason ?? "")"])
        }
        return [t.render(), "", "\(r.workload): \(r.step); \(r.repeats) round(s); ratios to the plain folder within each round"]
            .joined(separator: "\n")
    }
}
