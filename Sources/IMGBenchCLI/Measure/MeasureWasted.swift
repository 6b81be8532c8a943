import ArgumentParser
import Foundation
import Measure

/// `imgbench measure wasted IMAGE`: bytes an image carries that nobody sees or needs.
struct MeasureWasted: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wasted",
        abstract: "Wasted bytes of a built image: per OCI layer (deleted or replaced later, package caches left) and per VM chain link (overwritten later, freed by the filesystem).",
        discussion: """
            IMAGE is an output folder of imgbench build (out/NAME). Efficiency: the share of the \
            bytes stored (file bytes of all layers; clusters allocated by all links) that the \
            finished container or VM sees and needs.
            """)

    @Argument(help: "An output folder of imgbench build (out/NAME).", transform: absolutePath) var image: String
    @Option(help: "How many of the largest offenders to list.") var top = 10
    @OptionGroup var options: MeasureOptions

    func run() throws {
        let scratch = "\(image).measure-wasted-\(getpid())"
        let result = try measuring(scratch) {
            try WastedMeasurement(image: try BuiltImage(folder: image), workdir: scratch, top: top).run()
        }
        try options.emit(result) { Self.table(result) }
    }

    static func table(_ r: WastedMeasurement.Result) -> String {
        func b(_ v: Int64) -> String { bytesText(Double(v)) }
        var lines: [String] = []
        if let o = r.oci {
            var t = TextTable(header: ["layer", "step", "files", "deleted/replaced later", "caches left"])
            t.rows = o.layers.map { [String($0.index), String($0.step.prefix(48)), b($0.fileBytes), b($0.hiddenBytes), b($0.cacheBytes)] }
            lines += ["OCI image", t.render(), "",
                      "wasted \(b(o.wastedBytes)) of \(b(o.totalFileBytes)); efficiency \(String(format: "%.1f%%", o.efficiency * 100))"]
            if !o.offenders.isEmpty {
                var off = TextTable(header: ["bytes", "layer", "path", "why"])
                off.rows = o.offenders.map { [b($0.bytes), String($0.layer), $0.path, $0.reason] }
                lines += ["", "largest offenders", off.render()]
            }
        }
        if let v = r.vm {
            var t = TextTable(header: ["link", "step", "allocated", "overwritten later", "freed in the final fs"])
            t.rows = v.links.map { [($0.path as NSString).lastPathComponent.prefix(16) + "", String($0.step.prefix(48)),
                                    ByteSize.format($0.allocatedBytes), ByteSize.format($0.overwrittenBytes), ByteSize.format($0.freedBytes)] }
            lines += ["", "VM chain", t.render(), "",
                      "wasted \(ByteSize.format(v.wastedBytes)) of \(ByteSize.format(v.allocatedBytes)) allocated; efficiency \(String(format: "%.1f%%", v.efficiency * 100))"]
        }
        return lines.joined(separator: "\n")
    }
}
