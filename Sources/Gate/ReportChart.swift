import Foundation
import Host

/// The value axis of a chart: linear from zero, or logarithmic (decades) when the values span
/// two decades or more, so that a 12 KiB clone and a 1.6 GiB disk are both visible. Every tick
/// label is in one unit, named once in the axis title.
struct ChartAxis {
    let logarithmic: Bool
    let low: Double
    let high: Double
    /// Values are divided by this for the tick labels (1024^k for bytes).
    let divisor: Double
    let title: String
    let ticks: [Double]

    init(unit: ReportBook.Unit, values: [Double]) {
        let positive = values.filter { $0 > 0 && $0.isFinite }
        let top = values.filter(\.isFinite).max() ?? 1
        switch unit {
        case .bytes:
            let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
            var k = 0
            while k < units.count - 1, top >= pow(1024, Double(k + 1)) { k += 1 }
            divisor = pow(1024, Double(k))
            title = units[k] + (k == 0 ? "" : " (1 \(units[k]) = 1024^\(k) bytes)")
        case .seconds: divisor = 1; title = "seconds"
        case .ratio: divisor = 1; title = "ratio (x)"
        case .percent: divisor = 1; title = "percent"
        case .figure: divisor = 1; title = "figure"
        }
        let bottom = values.filter(\.isFinite).min() ?? 0
        if let smallest = positive.min(), let largest = positive.max(), bottom >= 0, largest / smallest >= 100 {
            logarithmic = true
            // A decade below the smallest value, so that its bar is seen.
            let lo = floor(log10(smallest / divisor)) - 1, hi = max(ceil(log10(largest / divisor)), lo + 1), d = divisor
            low = pow(10, lo) * d
            high = pow(10, hi) * d
            ticks = stride(from: lo, through: hi, by: 1).map { pow(10, $0) * d }
        } else {
            logarithmic = false
            let reach = max(top, unit == .ratio ? 1 : 0)
            let step = Self.niceStep((reach - min(bottom, 0)) / divisor / 5) * divisor
            let (lo, hi) = (min(0, floor(bottom / step) * step), max(step, ceil(reach / step) * step))
            low = lo
            high = hi
            ticks = Array(stride(from: lo, through: hi + step / 2, by: step))
        }
    }

    /// 1, 2 or 5 times a power of ten, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let p = pow(10, floor(log10(raw)))
        return [1.0, 2, 5, 10].map { $0 * p }.first { $0 >= raw } ?? 10 * p
    }

    /// Where `v` falls, from 0 (the axis start) to 1 (its end); values below a logarithmic
    /// axis's start are at its start.
    func position(_ v: Double) -> Double {
        if logarithmic {
            guard v > 0 else { return 0 }
            return Swift.max(0, (log10(v) - log10(low)) / (log10(high) - log10(low)))
        }
        return (v - low) / (high - low)
    }

    func label(_ tick: Double) -> String {
        let v = tick / divisor
        if logarithmic { return v >= 1 ? String(format: "%.0f", v) : String(format: "%g", v) }
        return v == v.rounded() ? String(format: "%.0f", v) : String(format: "%g", (v * 1000).rounded() / 1000)
    }
}

extension ReportBook {
    /// A horizontal grouped bar chart of one table: a group per row, a bar per series with its
    /// value and, where the results have rounds, an error bar from the lowest to the highest
    /// round; an axis with ticks in one unit (logarithmic when the values span decades); a 1.0x
    /// line on ratio charts; a legend naming every series; and under it where and when the
    /// results were made, and their caveats (a VM under TCG).
    public func svg(_ t: Table) -> String {
        let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
        let charWidth = 6.8
        let labelWidth = max(120, Double(t.rows.map(\.label.count).max() ?? 0) * charWidth + 16)
        let plotWidth = 560.0, bar = 16.0, gap = 12.0, top = 52.0, valueRoom = 110.0
        var values = t.rows.flatMap { $0.values.compactMap { $0 } }
        values += t.ranges.flatMap { $0.compactMap { $0 } }.flatMap { [$0.lowerBound, $0.upperBound] }
        let axis = ChartAxis(unit: t.unit, values: values.isEmpty ? [1] : values)
        func x(_ v: Double) -> Double { labelWidth + axis.position(v) * plotWidth }
        let groupHeight = Double(t.columns.count) * bar + gap
        let plotBottom = top + Double(t.rows.count) * groupHeight
        let width = labelWidth + plotWidth + valueRoom
        let footer = chartFooter(t, width: width, charWidth: charWidth)
        let legendTop = plotBottom + 48
        let footerTop = legendTop + Double(t.columns.count) * 18 + 14
        let height = footerTop + Double(footer.count) * 15 + 8
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" class="chart" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
            <title>\(Self.xml(t.title))</title>
            <rect width="100%" height="100%" fill="white"/>
            <text x="10" y="22" font-size="15" font-weight="bold">\(Self.xml(t.title))</text>
            <text x="10" y="40" font-size="11" fill="#555">\(Self.xml(axis.logarithmic ? "logarithmic axis: the values span decades" : "linear axis from zero"))</text>

            """
        // Grid and ticks.
        for tick in axis.ticks {
            let tx = f(x(tick))
            s += "<line x1=\"\(tx)\" y1=\"\(f(top - 4))\" x2=\"\(tx)\" y2=\"\(f(plotBottom))\" stroke=\"#e4e4e4\"/>\n"
            s += "<line x1=\"\(tx)\" y1=\"\(f(plotBottom))\" x2=\"\(tx)\" y2=\"\(f(plotBottom + 5))\" stroke=\"#333\"/>\n"
            s += "<text class=\"tick\" x=\"\(tx)\" y=\"\(f(plotBottom + 18))\" text-anchor=\"middle\" font-size=\"11\">\(Self.xml(axis.label(tick)))</text>\n"
        }
        s += "<line x1=\"\(f(labelWidth))\" y1=\"\(f(plotBottom))\" x2=\"\(f(labelWidth + plotWidth))\" y2=\"\(f(plotBottom))\" stroke=\"#333\"/>\n"
        s += "<text class=\"axis-title\" x=\"\(f(labelWidth + plotWidth / 2))\" y=\"\(f(plotBottom + 36))\" text-anchor=\"middle\">\(Self.xml(axis.title))</text>\n"
        for (ri, r) in t.rows.enumerated() {
            let y0 = top + Double(ri) * groupHeight
            s += "<text x=\"\(f(labelWidth - 8))\" y=\"\(f(y0 + Double(t.columns.count) * bar / 2 + 4))\" text-anchor=\"end\">\(Self.xml(r.label))</text>\n"
            for (ci, v) in r.values.enumerated() {
                let y = y0 + Double(ci) * bar
                guard let v, v.isFinite else { continue }
                let start = x(axis.logarithmic ? axis.low : Swift.max(axis.low, 0)), end = x(v)
                let (bx, bw) = end >= start ? (start, end - start) : (end, start - end)
                s += "<rect class=\"bar\" x=\"\(f(bx))\" y=\"\(f(y))\" width=\"\(f(Swift.max(bw, v == 0 ? 0 : 1)))\" height=\"\(f(bar - 3))\" fill=\"\(palette[ci % palette.count])\"><title>\(Self.xml(t.columns[ci])): \(Self.xml(t.format(v)))</title></rect>\n"
                var textX = Swift.max(start, end) + 4
                if let range = t.range(ri, ci), range.lowerBound != range.upperBound {
                    let (lo, hi, mid) = (x(range.lowerBound), x(range.upperBound), y + (bar - 3) / 2)
                    s += "<g class=\"error-bar\" stroke=\"#222\"><title>rounds: \(Self.xml(t.format(range.lowerBound))) to \(Self.xml(t.format(range.upperBound)))</title>"
                    s += "<line x1=\"\(f(lo))\" y1=\"\(f(mid))\" x2=\"\(f(hi))\" y2=\"\(f(mid))\"/>"
                    s += "<line x1=\"\(f(lo))\" y1=\"\(f(mid - 4))\" x2=\"\(f(lo))\" y2=\"\(f(mid + 4))\"/>"
                    s += "<line x1=\"\(f(hi))\" y1=\"\(f(mid - 4))\" x2=\"\(f(hi))\" y2=\"\(f(mid + 4))\"/></g>\n"
                    textX = Swift.max(textX, hi + 4)
                }
                s += "<text x=\"\(f(textX))\" y=\"\(f(y + bar - 5))\" font-size=\"10\">\(Self.xml(t.format(v)))</text>\n"
            }
        }
        if t.unit == .ratio {
            let rx = f(x(1))
            s += "<line class=\"reference\" x1=\"\(rx)\" y1=\"\(f(top - 8))\" x2=\"\(rx)\" y2=\"\(f(plotBottom))\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/>\n"
            s += "<text x=\"\(rx)\" y=\"\(f(top - 11))\" text-anchor=\"middle\" font-size=\"10\" fill=\"#c00\">1.0x</text>\n"
        }
        s += "<line x1=\"\(f(labelWidth))\" y1=\"\(f(top - 4))\" x2=\"\(f(labelWidth))\" y2=\"\(f(plotBottom))\" stroke=\"#333\"/>\n"
        for (ci, c) in t.columns.enumerated() {
            let y = legendTop + Double(ci) * 18
            s += "<rect x=\"\(f(labelWidth))\" y=\"\(f(y))\" width=\"12\" height=\"12\" fill=\"\(palette[ci % palette.count])\"/>"
            s += "<text x=\"\(f(labelWidth + 18))\" y=\"\(f(y + 10))\">\(Self.xml(c))</text>\n"
        }
        for (i, line) in footer.enumerated() {
            s += "<text class=\"footer\" x=\"10\" y=\"\(f(footerTop + Double(i) * 15))\" font-size=\"11\" fill=\"#444\">\(Self.xml(line))</text>\n"
        }
        s += "</svg>\n"
        return s
    }

    /// The chart's standalone file: the SVG with its XML declaration.
    public func svgFile(_ t: Table) -> String { "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + svg(t) }

    /// Where and when the results were made, the table's note, and a caveat for a VM under TCG,
    /// wrapped to the chart's width.
    func chartFooter(_ t: Table, width: Double, charWidth: Double) -> [String] {
        var parts: [String] = []
        if let made = madeText { parts.append(made) }
        if t.rows.isEmpty { parts.append("no results") }
        if !t.note.contains("TCG"), provenances.contains(where: { $0.accelerator == "tcg" }), t.columns.contains(where: { $0.contains("VM") }) {
            parts.append("VM figures made under software emulation (TCG): not comparable to native or to the container.")
        }
        parts.append(t.note)
        let columns = max(40, Int(width / (charWidth * 0.9)) - 4)
        return parts.flatMap { Self.wrap($0, columns: columns) }
    }

    /// "host NAME (CPU, N CPUs, M memory), results made FROM to TO", from the provenance of the
    /// results read; nil when none records it.
    var madeText: String? {
        guard !provenances.isEmpty else { return nil }
        let hosts = ordered(provenances.map { "\($0.hostname) (\($0.cpuModel), \($0.cpus) CPUs, \(ByteCount.format($0.memoryBytes)))" })
        let dates = provenances.map(\.madeAt).sorted()
        let when = dates.first == dates.last ? dates[0] : "\(dates[0]) to \(dates[dates.count - 1])"
        return "host \(hosts.joined(separator: "; ")); results made \(when); imgbench \(ordered(provenances.map(\.imgbenchVersion)).joined(separator: ", "))"
    }

    static func wrap(_ text: String, columns: Int) -> [String] {
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > columns {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }

    func f(_ v: Double) -> String { String(format: "%.1f", v) }
}
