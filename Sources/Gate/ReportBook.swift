import Foundation
import Host
import ImageBuild
import Measure
import OCI
import RuntimeSuite

/// The papers' tables (Sharma et al., Middleware 2016; Felter et al., IBM 2014) made from imgbench's JSON results: build time, image size, incremental size
/// of one more instance, copy-on-write write overhead, and wasted bytes, containers beside VMs and
/// driver beside driver. Rendered as Markdown, and as one SVG bar chart per table.
public struct ReportBook: Sendable {
    public enum Unit: String, Sendable {
        case seconds, bytes, ratio, percent
        /// A benchmark figure whose unit the row names (imgbench run).
        case figure
    }

    public struct Table: Sendable {
        public var title: String
        public var unit: Unit
        /// The series: one per column after the row label.
        public var columns: [String]
        public var rows: [(label: String, values: [Double?])]
        public var note: String
        /// Per row and value, the spread over the rounds (lowest, highest) where the results have
        /// rounds: drawn as error bars. Empty, or one entry per row.
        public var ranges: [[ClosedRange<Double>?]] = []
        /// Whether the table has a chart: one whose rows each have their own unit has none (its
        /// ratios to native have one).
        public var charted: Bool { unit != .figure }

        func range(_ row: Int, _ column: Int) -> ClosedRange<Double>? {
            row < ranges.count && column < ranges[row].count ? ranges[row][column] : nil
        }

        func format(_ v: Double?) -> String {
            guard let v, v.isFinite else { return "-" }
            switch unit {
            // A start-up of a few milliseconds keeps its figures rather than "0.0 s".
            case .seconds: return v != 0 && abs(v) < 0.1 ? "\(Self.significant(v)) s" : String(format: "%.1f s", v)
            case .bytes: return (v < 0 ? "-" : "") + ByteCount.format(Self.wholeBytes(abs(v)))
            case .ratio: return String(format: "%.2fx", v)
            case .percent: return String(format: "%.1f%%", v)
            case .figure: return Self.significant(v)
            }
        }

        /// A byte count of a result as a whole number, at most `UInt64.max` (a result's figures are
        /// doubles: `UInt64(v)` trapped from 2^64 on).
        static func wholeBytes(_ v: Double) -> UInt64 {
            v >= 0x1p64 ? .max : UInt64(v.rounded(.down))
        }

        /// Four significant figures, without an exponent.
        public static func significant(_ v: Double) -> String {
            if v == 0 || !v.isFinite { return v == 0 ? "0" : "\(v)" }
            let digits = max(0, 3 - Int(floor(log10(abs(v)))))
            return String(format: "%.\(min(digits, 6))f", v)
        }
    }

    public private(set) var tables: [Table] = []
    /// The files read, in order, and what each was.
    public private(set) var sources: [(path: String, kind: String)] = []

    var builds: [BuildReport] = []
    var clones: [CloneMeasurement.Result] = []
    var cows: [CowMeasurement.Result] = []
    var wasted: [WastedMeasurement.Result] = []
    var runs: [RunReport] = []
    /// Where and when the results were made (their provenance), for the charts' and the page's
    /// footers.
    public private(set) var provenances: [Provenance] = []

    public init() {}

    /// Reads one result file: a build report, or a `measure` result (by its `kind`).
    public mutating func add(file path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw HostError.io(path: path, message: "cannot read") }
        try add(data, path: path)
    }

    /// The same for a file's content, read already; `path` names it in errors.
    public mutating func add(_ data: Data, path: String) throws {
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw BuildError.invalid("\(path): not JSON: \(error.localizedDescription)")
        }
        guard let dict = object as? [String: Any] else { throw BuildError.invalid("\(path): not a JSON object") }
        let dec = JSONDecoder()
        func decode<T: Decodable>(_ t: T.Type) throws -> T {
            do {
                return try dec.decode(t, from: data)
            } catch let e as DecodingError {
                let (place, problem) = DecodingErrorText.describe(e, decoding: T.self, from: data)
                throw BuildError.invalid("\(path): at \(place): \(problem)")
            }
        }
        let kind = ResultKind.of(dict)
        switch kind {
        case .clone?: clones.append(try decode(CloneMeasurement.Result.self))
        case .cow?: cows.append(try decode(CowMeasurement.Result.self))
        case .wasted?: wasted.append(try decode(WastedMeasurement.Result.self))
        case .run?: runs.append(try decode(RunReport.self))
        case .build?: builds.append(try decode(BuildReport.self))
        case nil:
            let k = dict["kind"].map { "\($0)" } ?? "missing"
            throw BuildError.invalid("\(path): not an imgbench result (kind \(k); expected a build report.json, a measure result or imgbench run results)")
        }
        sources.append((path, kind!.rawValue))
        // Every kind of result keeps where it was made under the same key.
        struct Made: Decodable { var provenance: Provenance? }
        if let made = try? dec.decode(Made.self, from: data).provenance { provenances.append(made) }
        tables = makeTables()
    }

    func makeTables() -> [Table] {
        var out: [Table] = []
        if !builds.isEmpty {
            out.append(Table(title: "Build time", unit: .seconds,
                             columns: ["container", "VM: base and steps", "VM: finalisation", "container when built", "VM when built"],
                             rows: builds.map { b in
                                 let finalisation = b.finalisation?.vm?.seconds
                                 let steps = b.totals.vmSeconds.map { $0 - (finalisation ?? 0) }
                                 return (b.recipe, [b.totals.containerSeconds, steps, finalisation, b.totals.containerBuiltSeconds, b.totals.vmBuiltSeconds])
                             },
                             note: "Wall time of each side from report.json. The VM's time is its base and steps plus its finalisation, shown as its own part: the kernel and initramfs install that makes a container root into a VM, which a container does not pay. This build's time counts a cached step's lookup only; \"when built\" is what the steps cost when they were built (kept with the cache entries)."))
            out.append(Table(title: "Image size", unit: .bytes,
                             columns: ["OCI compressed", "OCI uncompressed", "VM flattened (allocated)", "VM chain (allocated)"],
                             rows: builds.map { b in
                                 (b.recipe, [b.totals.imageCompressedBytes, b.totals.imageUncompressedBytes,
                                             b.totals.vmFlattenedAllocatedBytes, b.totals.vmChainAllocatedBytes].map { $0.map { Double($0) } })
                             },
                             note: "Layers as stored and as tars; the VM disk's allocated guest bytes."))
        }
        if !clones.isEmpty {
            let storages = ordered(clones.flatMap { $0.rows.filter(\.available).map(\.storage) })
            var t = Table(title: "Incremental size of one more instance", unit: .bytes, columns: storages,
                          rows: clones.map { c in
                              (c.recipe, storages.map { s in c.rows.first { $0.storage == s }?.bytes?.median })
                          },
                          note: "Median bytes on disk per clone (imgbench measure clone), beside full copies as the contrast (`cp -a --sparse=always` of the root, a standalone qcow2). vfs has no copy-on-write: its clone is the driver's own copy of the whole root, written without holes, plus the metadata listing it diffs against, so it can be larger than the sparse full copy.")
            t.ranges = clones.map { c in storages.map { s in c.rows.first { $0.storage == s }?.bytes.map { $0.min...$0.max } } }
            out.append(t)
        }
        if !cows.isEmpty {
            let storages = ordered(cows.flatMap { $0.rows.filter(\.available).map(\.storage) })
            var ratio = Table(title: "Write overhead of copy-on-write", unit: .ratio, columns: storages,
                              rows: cows.map { c in (c.workload, storages.map { s in c.rows.first { $0.storage == s }?.ratio?.median }) },
                              note: "Median wall time over the plain folder's in the same round (imgbench measure cow); 1.0x is no overhead.")
            ratio.ranges = cows.map { c in storages.map { s in c.rows.first { $0.storage == s }?.ratio.map { $0.min...$0.max } } }
            var seconds = Table(title: "Write overhead: wall time", unit: .seconds, columns: storages,
                                rows: cows.map { c in (c.workload, storages.map { s in c.rows.first { $0.storage == s }?.seconds?.median }) },
                                note: "Median seconds of the workload alone on each storage.")
            seconds.ranges = cows.map { c in storages.map { s in c.rows.first { $0.storage == s }?.seconds.map { $0.min...$0.max } } }
            out += [ratio, seconds]
        }
        if !wasted.isEmpty {
            out.append(Table(title: "Wasted bytes", unit: .bytes,
                             columns: ["OCI: hidden by a later layer", "OCI: package caches left", "VM: overwritten by a later link", "VM: freed by the filesystem"],
                             rows: wasted.map { w in
                                 (w.recipe, [w.oci.map { Double($0.layers.reduce(0) { $0 + $1.hiddenBytes }) },
                                             w.oci.map { Double($0.layers.reduce(0) { $0 + $1.cacheBytes }) },
                                             w.vm.map { Double($0.links.reduce(0) { $0 + $1.overwrittenBytes }) },
                                             w.vm.map { Double($0.links.reduce(0) { $0 + $1.freedBytes }) }])
                             },
                             note: "Wasted bytes, one definition on both sides (imgbench measure wasted, check, oci inspect): bytes an image carries that nobody sees or needs, in its parts. OCI: files a later layer deletes or replaces, and package caches and lists left; VM: clusters a later link overwrites, and blocks the filesystem freed but the disk still holds."))
        }
        if !runs.isEmpty {
            out += runTables()
        }
        return out
    }

    /// imgbench run: each workload's figures natively, in the container and in the VM, and the
    /// ratios to native taken within the same run.
    func runTables() -> [Table] {
        var rows: [(label: String, values: [Double?])] = []
        var spreads: [[ClosedRange<Double>?]] = []
        var ratios: [(label: String, values: [Double?])] = []
        var emulated = false
        for run in runs {
            for w in run.results {
                emulated = emulated || w.vm?.emulated == true
                for f in w.figures {
                    func value(_ s: RunReport.SideResult?) -> Double? {
                        s?.status == .ok ? s?.figures.first { $0.name == f.name }?.value : nil
                    }
                    let label = "\(run.recipe) \(w.workload): \(f.name)" + (f.name == f.unit ? "" : " (\(f.unit))")
                    rows.append((label, [value(w.native), value(w.container), value(w.vm)]))
                    spreads.append([w.native, w.container, w.vm].map { s in
                        guard s?.status == .ok, let v = s?.figures.first(where: { $0.name == f.name })?.samples, let lo = v.min(), let hi = v.max() else { return nil }
                        return lo...hi
                    })
                    ratios.append((label, [w.container?.ratios?[f.name], w.vm?.ratios?[f.name]]))
                }
            }
        }
        let vm = emulated ? "VM (TCG)" : "VM"
        let settings = ordered(runs.map { "\($0.settings.cpus) CPU\($0.settings.cpus == 1 ? "" : "s"), \(ByteCount.format($0.settings.memoryBytes)) for the VM" })
        let caveat = emulated ? " The VM ran under software emulation (TCG): its figures are not comparable to native." : ""
        var figures = Table(title: "Runtime workloads", unit: .figure, columns: ["native", "container", vm], rows: rows,
                            note: "The same workload natively, in the container (runc) and in the VM (QEMU), in one run of imgbench run (\(settings.joined(separator: "; "))), as Felter et al. (IBM 2014) compared them; a dash is a side not run or failed; each row has its own unit, so the chart is of the ratios below.\(caveat)")
        figures.ranges = spreads
        var out = [
            figures,
            Table(title: "Runtime relative to native", unit: .ratio, columns: ["container", vm], rows: ratios,
                  note: "Each figure over the native one of the same run; 1.0x is native.\(caveat)"),
        ]
        // Sharma et al.'s start-up and footprint, charted in their own units.
        if let t = experimentTable(Experiment.startup.name, title: "Start-up time", unit: .seconds, scale: 1, vm: vm,
                                   note: "From the built image to an idle instance's first line (imgbench run --workload startup), as Sharma et al. (Middleware 2016) measured it: natively a shell's start on the host (the floor), in the container runc create plus runc start, in the VM QEMU's direct kernel boot to the agent; medians, error bars the rounds' lowest and highest.\(caveat)") {
            out.append(t)
        }
        if let t = experimentTable(Experiment.footprint.name, title: "Idle footprint", unit: .bytes, scale: Double(1 << 20), vm: vm,
                                   note: "The host memory one idle instance costs (imgbench run --workload footprint), as Sharma et al. (Middleware 2016) compared it: PSS and RSS of its host processes (the shell natively, the container's process tree, QEMU's process), and the VM guest's own MemTotal - MemAvailable.\(caveat)") {
            out.append(t)
        }
        return out
    }

    /// The figures of one experiment over every run holding it: a row per figure, a column per
    /// side, error bars from the rounds; values times `scale` (MiB to bytes).
    func experimentTable(_ name: String, title: String, unit: Unit, scale: Double, vm: String, note: String) -> Table? {
        var rows: [(label: String, values: [Double?])] = []
        var spreads: [[ClosedRange<Double>?]] = []
        for run in runs {
            for w in run.results where w.workload == name {
                for f in w.figures {
                    let sides = [w.native, w.container, w.vm].map { s in s?.status == .ok ? s?.figures.first(where: { $0.name == f.name }) : nil }
                    guard sides.contains(where: { $0 != nil }) else { continue }
                    rows.append(("\(run.recipe): \(f.name)", sides.map { $0.map { $0.value * scale } }))
                    spreads.append(sides.map { s in
                        guard let v = s?.samples, let lo = v.min(), let hi = v.max() else { return nil }
                        return (lo * scale)...(hi * scale)
                    })
                }
            }
        }
        guard !rows.isEmpty else { return nil }
        var t = Table(title: title, unit: unit, columns: ["native", "container", vm], rows: rows, note: note)
        t.ranges = spreads
        return t
    }

    func ordered(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    // MARK: - Rendering

    public func markdown() -> String {
        var lines: [String] = []
        for t in tables {
            lines.append("## \(t.title)")
            lines.append("")
            lines.append("| | " + t.columns.map(escapeMarkdown).joined(separator: " | ") + " |")
            lines.append("|---|" + t.columns.map { _ in "---:" }.joined(separator: "|") + "|")
            for r in t.rows {
                lines.append("| \(escapeMarkdown(r.label)) | " + r.values.map { t.format($0) }.joined(separator: " | ") + " |")
            }
            lines.append("")
            lines.append(t.note)
            lines.append("")
        }
        lines.append("Sources: " + sources.map { "\($0.path) (\($0.kind))" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    func escapeMarkdown(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }

    /// A file name for a table's chart.
    public static func fileName(_ t: Table) -> String {
        t.title.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined()
            .split(separator: "-").joined(separator: "-") + ".svg"
    }

    static func xml(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
