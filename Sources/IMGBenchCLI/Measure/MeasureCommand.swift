import ArgumentParser
import Foundation
import Host
import Layers
import Measure
import QcowIO

/// `imgbench measure …`: what each technology costs, measured on built images.
struct MeasureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "measure",
        abstract: "Measure the cost of one more instance (clone), the write overhead of copy-on-write storage (cow), and wasted bytes (wasted).",
        subcommands: [MeasureClone.self, MeasureCow.self, MeasureWasted.self])
}

/// Options every measurement takes.
struct MeasureOptions: ParsableArguments {
    @Option(help: "table or json.") var format: OutputFormat = .table
    @Option(help: "Also write the JSON result to this file.", transform: absolutePath) var output: String?

    func emit<T: Encodable>(_ result: T, table: () -> String) throws {
        let json = try JSONOutput.string(result)
        if let output { try (json + "\n").write(toFile: output, atomically: true, encoding: .utf8) }
        printOut(format == .json ? json : table())
    }
}

/// Options of the measurements that run on storage drivers, in rounds (clone, cow).
struct DriverRounds: ParsableArguments {
    @Option(help: "Repeat the measurement N times: minimum, median and maximum of each figure.") var `repeat` = 1
    @Option(help: ArgumentHelp("Storage drivers of the container side, comma-separated (\(StorageDrivers.names.joined(separator: ", "))); default every driver, those that do not work here reported as such.", valueName: "drivers"))
    var drivers = StorageDrivers.names.joined(separator: ",")

    func validate() throws {
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
        for d in driverList where StorageDriverKind(rawValue: d) == nil {
            throw ValidationError("--drivers: unknown driver \(d); known: \(StorageDrivers.names.joined(separator: ", "))")
        }
    }

    var driverList: [String] { drivers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
}

/// Runs a measurement with the build's error handling: one clear line and exit 1, and everything
/// mounted or started released, also on Ctrl-C.
func measuring<T>(_ scratch: String, _ body: () throws -> T) throws -> T {
    do {
        return try Interrupts.removing(scratch) { try reportingErrors(body) }
    } catch let e where isReported(e) {
        Cleanup.runAll()
        printErr("imgbench: error: \(e)")
        throw ExitCode(1)
    }
}

extension Summary {
    /// "median (min-max)" when the spread shows at this precision, else the value.
    func render(_ f: (Double) -> String) -> String {
        let (lo, mid, hi) = (f(min), f(median), f(max))
        return lo == hi ? mid : "\(mid) (\(lo)-\(hi))"
    }
}

func bytesText(_ v: Double) -> String { v < 0 ? "-" + ByteSize.format(UInt64(-v)) : ByteSize.format(UInt64(v)) }
