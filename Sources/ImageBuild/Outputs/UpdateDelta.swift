import Foundation
import Host
import QcowIO

/// What a machine that runs the old build must download to run the new one, both ways (Sharma
/// et al., Middleware 2016, compare the two technologies' image sizes; this is their update
/// cost): for the container, the compressed layers the new image has and the old one lacks
/// (what a pull transfers, manifest and config aside); for the VM, a qcow2 holding only the
/// clusters of the new disk that differ from the old one, backed by it (what an incremental
/// disk update transfers), beside each side's full size.
public struct UpdateDelta: Codable, Equatable, Sendable {
    /// The old build's output folder.
    public var baseline: String
    /// Layers of the new image the old one lacks, and their compressed bytes.
    public var containerNewLayers: Int
    public var containerBytes: UInt64
    /// Every layer of the new image, compressed: a pull from nothing.
    public var containerFullBytes: UInt64
    /// The delta qcow2's file size and the clusters it holds; nil when the VM disks were not compared.
    public var vmBytes: UInt64?
    public var vmClusters: UInt64?
    /// The new disk's file size: a copy from nothing.
    public var vmFullBytes: UInt64?

    /// The container side from the two reports (their layer digests and compressed sizes).
    public static func container(old: BuildReport, new: BuildReport, baseline: String) -> UpdateDelta {
        func layers(_ r: BuildReport) -> [(String, UInt64)] {
            ([r.base.container] + r.steps.map(\.container)).compactMap { m in m?.layerDigest.map { ($0, m?.layerCompressedBytes ?? 0) } }
        }
        let had = Set(layers(old).map(\.0))
        var seen = Set<String>()
        let all = layers(new).filter { seen.insert($0.0).inserted }
        let missing = all.filter { !had.contains($0.0) }
        return UpdateDelta(baseline: baseline, containerNewLayers: missing.count, containerBytes: missing.map(\.1).reduce(0, +),
                           containerFullBytes: all.map(\.1).reduce(0, +), vmBytes: nil, vmClusters: nil, vmFullBytes: nil)
    }

    /// Adds the VM side: the new disk converted against the old one as its backing file, in
    /// `scratch` (removed after, and on Ctrl-C).
    public mutating func addVM(old: String, new: String, scratch: String) throws {
        try FileSystem.makeDirectories(scratch)
        let delta = "\(scratch)/.imgbench-update-\(getpid()).qcow2"
        let remove = Cleanup.register("remove \(delta)") { unlink(delta); unlink(delta + ".partial") }
        defer { Cleanup.run(remove) }
        let stats = try Qcow2Converter.convert(source: try DiskImages.open(new), to: delta,
                                               options: Qcow2ConvertOptions(backingFile: old, backingFormat: "qcow2"))
        vmBytes = stats.fileBytes
        vmClusters = stats.dataClusters
        vmFullBytes = UInt64(max(0, try FileSystem.lstat(new).st_size))
    }
}

extension UpdateDelta {
    /// "container: 2 new layers, 4.9 MiB of 120.0 MiB; VM: 12.0 MiB (190 clusters) of 1.6 GiB".
    public var summary: String {
        let c = "container: \(containerNewLayers) new layers, \(ByteCount.format(containerBytes)) of \(ByteCount.format(containerFullBytes)) compressed"
        guard let vmBytes, let vmFullBytes else { return c }
        return c + "; VM: \(ByteCount.format(vmBytes)) (\(vmClusters ?? 0) clusters differ) of a \(ByteCount.format(vmFullBytes)) disk"
    }
}

extension UpdateDelta {
    /// The update from the build in folder `baseline` to `report`, whose outputs are in `folder`
    /// (a build's `OUT.partial` before it is moved in place): both sides when both have a disk.
    public static func from(baseline: String, to report: BuildReport, in folder: String) throws -> UpdateDelta {
        let old = try BuildReport.load("\(baseline)/report.json")
        var delta = container(old: old, new: report, baseline: baseline)
        if let od = old.outputs.vmDisk.map({ "\(baseline)/\($0)" }), let nd = report.outputs.vmDisk.map({ "\(folder)/\($0)" }),
           FileManager.default.fileExists(atPath: od) {
            try delta.addVM(old: od, new: nd, scratch: folder)
        }
        return delta
    }
}
