import ArgumentParser
import Foundation
import Gate
import Host
import ImageBuild
import QcowIO
import RuntimeSuite

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a workload natively, in the built container and in the built VM, with the same CPUs and memory, and compare.",
        discussion: """
            MANIFEST is a build's handoff.json (or its folder, out/NAME). The container runs with runc \
            on the bundle's rootfs, read-only; the VM boots a snapshot of the flattened disk with QEMU \
            (KVM when it really runs a guest here, otherwise software emulation, marked as such). \
            Workloads: \(Workload.all.map(\.name).joined(separator: ", ")); `declared` runs the ones the \
            recipe declares (# workloads=). Sharma et al.'s (Middleware 2016) experiments, named as \
            workloads: startup (from the built image to an idle instance's first line: runc create and \
            start; QEMU to the agent's first line), footprint (the host memory, PSS and RSS, of one idle \
            instance; the VM's guest view too) and density (idle instances that fit in --density-memory \
            before one more starts --density-drop slower, at most --density-max). Exit status: 0 every side gave its figures, 1 a side failed, \
            timed out or lacks a tool (named on stderr).
            """)

    @Argument(help: "The hand-off manifest: out/NAME/handoff.json or out/NAME.", transform: absolutePath) var manifest: String
    @Option(name: .customLong("workload"), help: "A workload name, a comma-separated list, or 'declared'; may repeat.")
    var workloads: [String]
    @Option(help: "CPUs for every side: taskset natively and for runc, -smp for the VM.") var cpus = 1
    @Option(help: "The VM's memory (-m), e.g. 512M or 2G; not enforced natively or in the container.") var memory = "1G"
    @Option(help: "Seconds each timed workload runs.") var duration = 5
    @Option(help: "Seconds each side may take (the VM: boot included) before it is stopped.") var timeout: Double = 300
    @Option(help: "Rounds of every side, in turn: figures are medians, ratios the median of each round's.") var `repeat` = 1
    @Option(help: "The accelerator: kvm when it really runs a guest here (probed), else tcg.") var accel: BootCheck.Accelerator = .auto
    @Option(name: .customLong("on"), help: "Sides to run, comma-separated: native, container, vm.") var sides = "native,container,vm"
    @Option(help: "The container's network: host (the host's, as build steps run) or bridge (a namespace on a bridge with NAT, as Docker's default; the server's ports reached by DNAT), as Felter et al. compared them.")
    var containerNetwork: RuntimeBench.ContainerNetwork = .host
    @Option(help: "density: the host memory the idle instances may take (their PSS summed), e.g. 2G.") var densityMemory = "2G"
    @Option(help: "density: the share by which one more instance's start-up may be slower than the first's before the count stops, e.g. 0.5.")
    var densityDrop = 0.5
    @Option(help: "density: at most this many instances per side.") var densityMax = 4
    @Option(help: "table or json (on stdout).") var format: OutputFormat = .table
    @Option(help: "Also write the JSON results to this file.", transform: absolutePath) var output: String?
    @Option(help: "auto (a live display on a terminal, plain lines otherwise), plain, tty or quiet.") var progress: ProgressMode = .auto

    func validate() throws {
        for s in sideList where Side(rawValue: s) == nil { throw ValidationError("--on: '\(s)' is not native, container or vm") }
        if sideList.isEmpty { throw ValidationError("--on needs at least one side") }
        if duration < 1 { throw ValidationError("--duration must be at least 1") }
        if ByteSize(argument: memory) == nil { throw ValidationError("--memory: '\(memory)' is not a size (e.g. 512M, 2G)") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
        if `repeat` < 1 { throw ValidationError("--repeat must be at least 1") }
        if ByteSize(argument: densityMemory) == nil { throw ValidationError("--density-memory: '\(densityMemory)' is not a size (e.g. 512M, 2G)") }
        if !(densityDrop > 0 && densityDrop < 1) { throw ValidationError("--density-drop must be between 0 and 1 (a share, e.g. 0.5)") }
        if densityMax < 1 { throw ValidationError("--density-max must be at least 1") }
    }

    var sideList: [String] { sides.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func run() throws {
        var options = RuntimeBench.Options()
        options.cpus = cpus
        options.memoryBytes = ByteSize(argument: memory)?.bytes ?? options.memoryBytes
        options.durationSeconds = duration
        options.timeout = timeout
        options.repeats = `repeat`
        options.accelerator = accel
        options.sides = sideList.compactMap(Side.init(rawValue:))
        options.containerNetwork = containerNetwork
        options.densityMemoryBytes = ByteSize(argument: densityMemory)?.bytes ?? options.densityMemoryBytes
        options.densityDrop = densityDrop
        options.densityMax = densityMax
        let show = !progress.isQuiet
        let report: RunReport
        do {
            report = try Interrupts.releasing {
                let bench = try RuntimeBench(manifest: manifest, options: options) { if show { printErr("==> \($0)") } }
                var names: [String] = []
                for w in workloads.flatMap({ $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }) {
                    if w == "declared" {
                        guard !bench.handoff.recipe.workloads.isEmpty else {
                            throw BuildError.invalid("\(manifest): the recipe declares no workloads (# workloads=)")
                        }
                        names += bench.handoff.recipe.workloads
                    } else if !names.contains(w) {
                        names.append(w)
                    }
                }
                return try bench.run(workloads: names)
            }
        } catch let e where isReported(e) {
            Cleanup.runAll()
            printErr("imgbench: error: \(e)")
            throw ExitCode(1)
        }
        if let output {
            try JSONOutput.string(report).write(toFile: output, atomically: true, encoding: .utf8)
        }
        switch format {
        case .json: printOut(try JSONOutput.string(report))
        case .table: printOut(RunReportTable.render(report))
        }
        var failed = false
        for r in report.results {
            for (side, s) in r.sides where s.status != .ok {
                failed = true
                printErr("imgbench: error: \(s.error ?? "\(r.workload) \(side.rawValue): \(s.status.rawValue)")")
                if let t = s.outputTail, !t.isEmpty, s.status != .missingTool {
                    printErr(t.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
                }
            }
        }
        if failed { throw ExitCode(1) }
    }
}

/// A run report as tables: one per workload, a row per figure, the sides and their ratios to native.
enum RunReportTable {
    static func render(_ r: RunReport) -> String {
        var out: [String] = []
        let s = r.settings
        let head = "\(r.recipe): \(s.cpus) CPU\(s.cpus == 1 ? "" : "s") (host CPU \(s.cpuList)), \(ByteSize.format(s.memoryBytes)) for the VM, "
            + "\(s.durationSeconds) s per timed workload" + (s.repeats > 1 ? ", medians of \(s.repeats) rounds" : "")
            + "; host: \(r.host.cpuModel), \(r.host.cpus) CPUs, Linux \(r.host.kernel)"
        out.append(head)
        for w in r.results {
            let vmLabel = w.vm.map { "vm (\($0.accelerator ?? "?"))" } ?? "vm"
            var t = TextTable(header: ["figure", "unit", "native", "container", vmLabel, "container/native", "vm/native"])
            for f in w.figures {
                func value(_ side: RunReport.SideResult?) -> String {
                    guard let side else { return "-" }
                    guard side.status == .ok else { return side.status == .missingTool ? "missing \(side.missingTool ?? "tool")" : side.status.rawValue }
                    return side.figures.first { $0.name == f.name }.map { ReportBook.Table.significant($0.value) } ?? "-"
                }
                func ratio(_ side: RunReport.SideResult?) -> String {
                    side?.ratios?[f.name].map { String(format: "%.3f", $0) } ?? "-"
                }
                t.rows.append([f.name, f.unit, value(w.native), value(w.container), value(w.vm), ratio(w.container), ratio(w.vm)])
            }
            out.append("")
            out.append("\(w.workload): \(w.summary)")
            out.append(t.render())
            var notes = w.notes
            for (side, res) in w.sides {
                notes.append("\(side.rawValue): \(res.limits)" + String(format: "; %.1f s", res.seconds))
            }
            out += notes.map { "  note: \($0)" }
        }
        return out.joined(separator: "\n")
    }

}

extension RuntimeBench.ContainerNetwork: ExpressibleByArgument {}
