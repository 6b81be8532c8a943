import Foundation
import Host
import ImageBuild

/// Minimum, median and maximum of repeated samples of one figure, and how many there were.
public struct Summary: Codable, Equatable, Sendable {
    public var min: Double
    public var median: Double
    public var max: Double
    public var samples: Int

    public init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        min = s[0]
        max = s[s.count - 1]
        median = Statistics.median(s) ?? s[0]
        samples = s.count
    }
}

/// An output folder of `imgbench build`, read through its report.
public struct BuiltImage: Sendable {
    public let folder: String
    public let report: BuildReport

    public init(folder: String) throws {
        self.folder = folder
        let path = "\(folder)/report.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BuildError.invalid("\(path): no build report here; IMAGE is the output folder of imgbench build (out/NAME)")
        }
        do {
            report = try JSONDecoder().decode(BuildReport.self, from: data)
        } catch {
            throw BuildError.invalid("\(path): not a build report: \(error)")
        }
    }

    func path(_ relative: String?) -> String? { relative.map { "\(folder)/\($0)" } }
    public var ociLayout: String? { path(report.outputs.ociLayout) }
    public var bundleRootfs: String? { path(report.outputs.bundle).map { "\($0)/rootfs" } }
    public var flattenedDisk: String? { path(report.outputs.vmDisk) }
    public var tag: String { report.recipe }
}
