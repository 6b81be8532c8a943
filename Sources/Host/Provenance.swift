import Foundation

/// Where and from what a result was made: imgbench's version and commit, the machine, the
/// versions of the programs that did the work, the accelerator and the date. Every result file
/// (build report, measure and run results) carries one, so that `imgbench check` can say when it
/// compares figures made on different hosts or by different versions.
public struct Provenance: Codable, Equatable, Sendable {
    /// imgbench's release number; the commit says which source exactly.
    public static let version = "0.1.0"

    public var imgbenchVersion: String
    /// `git describe --always --dirty` of the source imgbench was built from; nil when that
    /// source (and its git history) is not where the build left it.
    public var commit: String?
    public var hostname: String
    public var kernel: String
    public var cpuModel: String
    public var cpus: Int
    public var memoryBytes: UInt64
    /// The first line of `--version` of each program; nil when it is not installed.
    public var qemu: String?
    public var runc: String?
    public var mmdebstrap: String?
    /// "kvm" or "tcg" when a VM ran; nil when none did.
    public var accelerator: String?
    /// When the result was written (ISO 8601, UTC).
    public var madeAt: String

    /// This process's provenance now, with the accelerator the work used (if a VM ran).
    public static func current(accelerator: String? = nil, date: Date = Date()) -> Provenance {
        var p = machine
        p.accelerator = accelerator
        p.madeAt = ISO8601DateFormatter().string(from: date)
        return p
    }

    /// `imgbench 0.1.0 (commit 71e7078)`: what `imgbench --version` prints.
    public static var versionLine: String {
        "imgbench \(version) (commit \(sourceCommit ?? "unknown"))"
    }

    /// Lines naming what differs between two results' provenance that makes their figures
    /// less comparable: the machine, imgbench, the programs and the accelerator (not the date).
    public func differences(from other: Provenance) -> [String] {
        let fields: [(String, String?, String?)] = [
            ("host", hostname, other.hostname), ("kernel", kernel, other.kernel), ("CPU", cpuModel, other.cpuModel),
            ("CPU count", String(cpus), String(other.cpus)),
            ("memory", ByteCount.format(memoryBytes), ByteCount.format(other.memoryBytes)),
            ("imgbench", imgbenchVersion, other.imgbenchVersion), ("imgbench commit", commit, other.commit),
            ("QEMU", qemu, other.qemu), ("runc", runc, other.runc), ("mmdebstrap", mmdebstrap, other.mmdebstrap),
            ("accelerator", accelerator, other.accelerator),
        ]
        return fields.filter { $0.1 != $0.2 }.map { "\($0.0): \($0.1 ?? "none") vs \($0.2 ?? "none")" }
    }

    /// The parts that do not change while the process runs, read once.
    static let machine = Provenance(
        imgbenchVersion: version, commit: sourceCommit, hostname: ProcessInfo.processInfo.hostName,
        kernel: procText("/proc/sys/kernel/osrelease") ?? "unknown", cpuModel: cpuModel(), cpus: Processors.count,
        memoryBytes: memoryBytes(), qemu: firstLine(["qemu-system-x86_64", "--version"]), runc: firstLine(["runc", "--version"]),
        mmdebstrap: firstLine(["mmdebstrap", "--version"]), accelerator: nil, madeAt: "")

    /// The source tree's commit, asked of git where this file was compiled from (a clean clone
    /// in CI, a release build made from a checkout).
    static let sourceCommit: String? = {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: folder) else { return nil }
        return firstLine(["git", "-c", "safe.directory=*", "-C", folder, "describe", "--always", "--dirty", "--abbrev=12"])
    }()

    /// The first line a program prints when it exits 0 within 10 s; nil otherwise.
    static func firstLine(_ argv: [String]) -> String? {
        guard Command.exists(argv[0]), let r = try? Command.run(argv, timeout: 10), r.status == 0, !r.timedOut else { return nil }
        let line = r.output.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) }
        return line?.isEmpty == false ? line : nil
    }

    static func procText(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `model name` of /proc/cpuinfo.
    static func cpuModel() -> String {
        let lines = procText("/proc/cpuinfo")?.split(separator: "\n") ?? []
        let model = lines.first { $0.hasPrefix("model name") }?.split(separator: ":", maxSplits: 1).last
        return model.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown"
    }

    /// `MemTotal` of /proc/meminfo, in bytes.
    static func memoryBytes() -> UInt64 {
        let line = procText("/proc/meminfo")?.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
        let kib = line?.split(separator: " ").dropFirst().first.flatMap { UInt64($0) } ?? 0
        return kib * 1024
    }
}
