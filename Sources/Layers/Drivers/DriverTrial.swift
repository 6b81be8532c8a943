import Foundation
import Host
import OCI

/// One driver put through one step: a base layer imported from a tree, a writable root prepared on
/// it, a script run there, the diff captured; and what each part cost.
public struct DriverReport: Codable, Sendable {
    public var driver: String
    public var works: Bool
    public var summary: String
    public var reason: String
    /// Seconds to prepare the writable root of the step on the base.
    public var prepareSeconds: Double?
    /// Seconds to capture the step's diff as a compressed layer.
    public var captureSeconds: Double?
    /// Bytes the step's writable layer holds on disk after the script.
    public var writableBytes: UInt64?
    /// What one more instance of the image costs: a fresh writable root on the step.
    public var cloneBytes: UInt64?
    public var cloneSeconds: Double?
    public var layerDigest: String?
    public var diffID: String?
    public var layerBytes: Int64?
    public var entries: [String]?
    public var error: String?
}

public enum DriverTrial {
    /// Runs the trial on one driver in `store` (made and left empty). `base` is a directory copied
    /// in as the first layer (`importTree`, as a build's base); `script` runs in the step's writable root. Every mount is released
    /// before this returns, whatever happens. Errors go into the report, except an interruption,
    /// which is thrown.
    public static func run(driver name: String, store: String, base: String, options: CaptureOptions,
                           layout: ImageLayout? = nil, script: (String) throws -> Void) throws -> DriverReport {
        let status = StorageDrivers.probe(name)
        var report = DriverReport(driver: name, works: status.works, summary: status.summary, reason: status.reason)
        guard status.works else { return report }
        do {
            let driver = try StorageDrivers.open(name, store: store)
            defer {
                for id in ["clone", "step", "base"] { try? driver.remove(id) }
                try? driver.close()
            }
            try driver.importTree("base", from: base)

            var t = Date()
            let root = try driver.prepare("step", parent: "base")
            report.prepareSeconds = Date().timeIntervalSince(t)
            try script(root)
            let blobs = layout?.blobs ?? BlobStore(root: store + "/blobs")
            t = Date()
            let captured = try driver.capture("step", into: blobs, options: options)
            report.captureSeconds = Date().timeIntervalSince(t)
            report.layerDigest = captured.layer.descriptor.digest.description
            report.diffID = captured.layer.diffID.description
            report.layerBytes = captured.layer.descriptor.size
            report.entries = captured.entries.map { "\($0.tarName) \($0.kindName)" }
            report.writableBytes = try driver.writableBytes("step")
            try driver.release("step")

            t = Date()
            _ = try driver.prepare("clone", parent: "step")
            report.cloneSeconds = Date().timeIntervalSince(t)
            report.cloneBytes = try driver.writableBytes("clone")
            try driver.remove("clone")
        } catch let e as HostError {
            if case .interrupted = e { throw e }
            report.error = e.description
        } catch {
            report.error = "\(error)"
        }
        return report
    }
}
