import Foundation
import Host
import ImageBuild

/// What `imgbench run` measured: per workload, the figures natively, in the container and in the
/// VM, and their ratios to native taken within the same run. Versioned (`schemaVersion`),
/// described in `docs/run-schema.json`; fields are only ever added within a version.
public struct RunReport: Codable, Equatable, Sendable {
    public static let currentSchemaVersion = 1
    /// Tells run results from a build report and the measure results (`imgbench report` reads them all).

    public var schemaVersion = RunReport.currentSchemaVersion
    public var kind = ResultKind.run
    /// The hand-off manifest, as given.
    public var manifest: String
    public var recipe: String
    public var imageDigest: String?
    public var startedAt: String
    public var host: Host
    public var settings: Settings
    public var results: [WorkloadResult]
    /// Where and from what the run was made, the VM's accelerator included (nil in results
    /// written before it was recorded).
    public var provenance: Provenance? = nil

    public struct Host: Codable, Equatable, Sendable {
        public var cpus: Int
        public var cpuModel: String
        public var kernel: String
    }

    public struct Settings: Codable, Equatable, Sendable {
        /// The CPUs every side gets (taskset natively and for the container; -smp and taskset for QEMU).
        public var cpus: Int
        /// The host CPUs they are pinned to, e.g. "0" or "0-1".
        public var cpuList: String
        /// The VM's memory (-m); not enforced natively or in the container.
        public var memoryBytes: UInt64
        public var durationSeconds: Int
        public var timeoutSeconds: Double
        /// Rounds of every side (--repeat); figures are medians over them.
        public var repeats: Int
    }

    public struct WorkloadResult: Codable, Equatable, Sendable {
        public var workload: String
        public var summary: String
        /// Whether the recipe declares it (`# workloads=`).
        public var declared: Bool
        public var figures: [FigureSpec]
        public var native: SideResult?
        public var container: SideResult?
        public var vm: SideResult?
        public var notes: [String]

        public var sides: [(Side, SideResult)] {
            [(.native, native), (.container, container), (.vm, vm)].compactMap { s, r in r.map { (s, $0) } }
        }
    }

    public enum Status: String, Codable, Equatable, Sendable {
        case ok
        /// The image (or the host, natively) lacks a program the workload needs.
        case missingTool
        /// No answer within the timeout: stopped.
        case timedOut
        case failed
    }

    public struct SideResult: Codable, Equatable, Sendable {
        public var status: Status
        /// Wall time of the side: start (boot, for the VM) to stop.
        public var seconds: Double
        public var figures: [Figure]
        /// Each figure divided by the native one of the same round (the median over the rounds),
        /// by figure name.
        public var ratios: [String: Double]?
        public var error: String?
        public var missingTool: String?
        /// VM: "kvm" or "tcg"; `emulated` is true under TCG, where figures are not comparable.
        public var accelerator: String?
        public var emulated: Bool?
        /// What was and was not enforced of --cpus and --memory on this side.
        public var limits: String
        /// The last lines of the side's output when it did not succeed.
        public var outputTail: String?
    }
}

/// Where a workload runs.
public enum Side: String, Codable, CaseIterable, Sendable {
    case native, container, vm
}

extension RunReport {
    /// Reads results written by `imgbench run --output`; errors name the file and the JSON path.
    public static func load(_ path: String) throws -> RunReport {
        let data = try DocumentError.contents(of: path, what: "results written by imgbench run --output")
        let report = try DocumentError.decode(RunReport.self, from: data, path: path, what: "imgbench run results")
        guard report.kind == .run else {
            throw DocumentError.invalid(place: "\(path): at kind", message: "\(report.kind.rawValue) results, not imgbench run results")
        }
        guard report.schemaVersion <= currentSchemaVersion else {
            throw DocumentError.invalid(place: "\(path): at schemaVersion",
                                        message: "schema version \(report.schemaVersion) is newer than this imgbench reads (\(currentSchemaVersion))")
        }
        return report
    }
}
