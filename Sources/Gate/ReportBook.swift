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

        func format(_ v: Double?) -> String {
            guard let v, v.isFinite else { return "-" }
            switch unit {
            case .seconds: return String(format: "%.1f s", v)
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
        tables = makeTables()
    }

    func makeTables() -> [Table] {
        var out: [Table] = []
        if !builds.isEmpty {
            out.append(Table(title: "Build time", unit: .seconds, columns: ["container", "VM", "container when built", "VM when built"],
                             rows: builds.map { b in
                                 (b.recipe, [b.totals.containerSeconds, b.totals.vmSeconds, b.totals.containerBuiltSeconds, b.totals.vmBuiltSeconds])
                             },
                             note: "Wall time of each side (base, steps, and for the VM the finalisation), from report.json: this build's, where cached steps count their lookup only, and what the steps cost when they were built (kept with the cache entries)."))
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
            out.append(Table(title: "Incremental size of one more instance", unit: .bytes, columns: storages,
                             rows: clones.map { c in
                                 (c.recipe, storages.map { s in c.rows.first { $0.storage == s }?.bytes?.median })
                             },
                             note: "Median bytes per clone (imgbench measure clone); the full copies are the contrast."))
        }
        if !cows.isEmpty {
            let storages = ordered(cows.flatMap { $0.rows.filter(\.available).map(\.storage) })
            out.append(Table(title: "Write overhead of copy-on-write", unit: .ratio, columns: storages,
                             rows: cows.map { c in (c.workload, storages.map { s in c.rows.first { $0.storage == s }?.ratio?.median }) },
                             note: "Median wall time over the plain folder's in the same round (imgbench measure cow)."))
            out.append(Table(title: "Write overhead: wall time", unit: .seconds, columns: storages,
                             rows: cows.map { c in (c.workload, storages.map { s in c.rows.first { $0.storage == s }?.seconds?.median }) },
                             note: "Median seconds of the workload alone on each storage."))
        }
        if !wasted.isEmpty {
            out.append(Table(title: "Wasted bytes", unit: .bytes, columns: ["OCI image", "VM chain"],
                             rows: wasted.map { w in (w.recipe, [w.oci.map { Double($0.wastedBytes) }, w.vm.map { Double($0.wastedBytes) }]) },
                             note: "OCI: deleted or replaced by a later layer, and package caches left; VM: clusters overwritten by a later link or freed by the filesystem (imgbench measure wasted)."))
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
                    ratios.append((label, [w.container?.ratios?[f.name], w.vm?.ratios?[f.name]]))
                }
            }
        }
        let vm = emulated ? "VM (TCG)" : "VM"
        let settings = ordered(runs.map { "\($0.settings.cpus) CPU\($0.settings.cpus == 1 ? "" : "s"), \(ByteCount.format($0.settings.memoryBytes)) for the VM" })
        let caveat = emulated ? " The VM ran under software emulation (TCG): its figures are not comparable to native." : ""
        return [
            Table(title: "Runtime workloads", unit: .figure, columns: ["native", "container", vm], rows: rows,
                  note: "The same workload natively, in the container (runc) and in the VM (QEMU), in one run of imgbench run (\(settings.joined(separator: "; "))); higher is better; a dash is a side not run or failed.\(caveat)"),
            Table(title: "Runtime relative to native", unit: .ratio, columns: ["container", vm], rows: ratios,
                  note: "Each figure over the native one of the same run.\(caveat)"),
        ]
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

    /// A horizontal grouped bar chart of one table: a group per row, a bar per series, a legend
    /// naming every series.
    public func svg(_ t: Table) -> String {
        let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
        let labelWidth = 190.0, chartWidth = 520.0, bar = 14.0, gap = 10.0, top = 44.0
        let maxValue = max(t.rows.flatMap { $0.values.compactMap { $0 } }.max() ?? 1, 1e-9)
        let groupHeight = Double(t.columns.count) * bar + gap
        let legendTop = top + Double(t.rows.count) * groupHeight + 16
        let height = legendTop + Double(t.columns.count) * 18 + 12
        let width = labelWidth + chartWidth + 120
        var s = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <title>\(xml(t.title))</title>
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="22" font-size="15" font-weight="bold">\(xml(t.title))</text>

            """
        for (ri, r) in t.rows.enumerated() {
            let y0 = top + Double(ri) * groupHeight
            s += "<text x=\"\(labelWidth - 8)\" y=\"\(fmt(y0 + Double(t.columns.count) * bar / 2 + 4))\" text-anchor=\"end\">\(xml(r.label))</text>\n"
            for (ci, v) in r.values.enumerated() {
                let y = y0 + Double(ci) * bar
                guard let v else { continue }
                let w = max(0, v) / maxValue * chartWidth
                s += "<rect x=\"\(labelWidth)\" y=\"\(fmt(y))\" width=\"\(fmt(w))\" height=\"\(fmt(bar - 2))\" fill=\"\(palette[ci % palette.count])\"><title>\(xml(t.columns[ci])): \(xml(t.format(v)))</title></rect>\n"
                s += "<text x=\"\(fmt(labelWidth + w + 4))\" y=\"\(fmt(y + bar - 4))\" font-size=\"10\">\(xml(t.format(v)))</text>\n"
            }
        }
        s += "<line x1=\"\(labelWidth)\" y1=\"\(top - 4)\" x2=\"\(labelWidth)\" y2=\"\(fmt(legendTop - 10))\" stroke=\"#333\"/>\n"
        for (ci, c) in t.columns.enumerated() {
            let y = legendTop + Double(ci) * 18
            s += "<rect x=\"\(labelWidth)\" y=\"\(fmt(y))\" width=\"12\" height=\"12\" fill=\"\(palette[ci % palette.count])\"/>"
            s += "<text x=\"\(labelWidth + 18)\" y=\"\(fmt(y + 10))\">\(xml(c))</text>\n"
        }
        s += "</svg>\n"
        return s
    }

    /// A file name for a table's chart.
    public static func fileName(_ t: Table) -> String {
        t.title.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined()
            .split(separator: "-").joined(separator: "-") + ".svg"
    }

    func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    func xml(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
