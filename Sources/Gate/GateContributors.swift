import Foundation
import Host
import ImageBuild
import Layers

extension ImageDiff.FileChange {
    /// Bytes this change adds to the layer (negative when it takes some away; a whiteout holds none).
    public var growth: Int64 {
        func bytes(_ s: Int64?, _ kind: String?) -> Int64 { kind == "whiteout" ? 0 : s ?? 0 }
        return bytes(newSize, newKind) - bytes(oldSize, oldKind)
    }

    /// "usr/bin/c (added, +4.9 KiB)".
    public var contribution: String { "\(path) (\(what), \(GateFormat.signedBytes(growth)))" }
}

extension SizeGate {
    /// Names what made each breach grow: the files of the step's layer that grew the most
    /// against the baseline's layer (for the image, over every step), when the OCI layouts of
    /// both builds are beside their reports (`out/NAME/report.json` and `out/NAME/oci`). A
    /// baseline kept without its layout explains only new steps.
    public static func explain(_ result: inout GateResult, report: BuildReport, baseline: BuildReport,
                               reportFolder: String, baselineFolder: String, top: Int = 5) {
        let newLayout = "\(reportFolder)/\(report.outputs.ociLayout ?? "oci")", oldLayout = "\(baselineFolder)/\(baseline.outputs.ociLayout ?? "oci")"
        guard result.checks.contains(where: \.overBudget), FileManager.default.fileExists(atPath: newLayout) else { return }
        var shelf = LayerShelf()
        var perStep: [String: [ImageDiff.FileChange]] = [:]
        for (p, now, was) in pair(report: report, baseline: baseline) {
            let nd = now?.container?.layerDigest, od = was?.container?.layerDigest
            guard nd != od, let n = try? nd.map({ try shelf.inventory($0, layout: newLayout) }) ?? LayerInventory(),
                  let o = try? od.map({ try shelf.inventory($0, layout: oldLayout) }) ?? LayerInventory() else { continue }
            perStep[key(p)] = byGrowth(ImageDiff.fileChanges(old: o, new: n).filter { $0.growth > 0 })
        }
        for i in result.checks.indices where result.checks[i].overBudget {
            let changes = result.checks[i].step.map { perStep[key($0)] ?? [] } ?? byGrowth(perStep.values.flatMap { $0 })
            if !changes.isEmpty { result.checks[i].contributors = Array(changes.prefix(top)) }
        }
    }

    static func byGrowth(_ c: [ImageDiff.FileChange]) -> [ImageDiff.FileChange] {
        c.sorted { ($0.growth, $1.path) > ($1.growth, $0.path) }
    }

    static func key(_ p: StepPairing) -> String { "\(p.index ?? -1)/\(p.baselineIndex ?? -1)" }
}
