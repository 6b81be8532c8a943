import ArgumentParser
import QcowIO

struct QcowCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check refcount consistency, counting leaks and corruptions as qemu-img check does.",
        discussion: "Exit status as qemu-img check: 0 clean, 1 check not completed, 2 corrupt, 3 leaked clusters only.")

    @Argument(help: "The image.", transform: absolutePath) var image: String
    @Option(help: "table or json.") var format: OutputFormat = .table

    func run() throws {
        let result: CheckResult = try reportingErrors {
            try QcowImage(path: image).check()
        }
        switch format {
        case .json:
            printOut(try JSONOutput.string(result))
        case .table:
            for m in result.messages { printOut(m) }
            if result.corruptions > 0 { printOut("\(result.corruptions) errors were found on the image.") }
            if result.leaks > 0 { printOut("\(result.leaks) leaked clusters were found on the image.") }
            if result.corruptions == 0 && result.leaks == 0 && result.checkErrors == 0 { printOut("No errors were found on the image.") }
            printOut("\(result.allocatedClusters)/\(result.totalClusters) = \(percent(result.allocatedClusters, result.totalClusters)) allocated, "
                + "\(percent(result.fragmentedClusters, result.allocatedClusters)) fragmented, "
                + "\(percent(result.compressedClusters, result.allocatedClusters)) compressed clusters")
            printOut("Image end offset: \(result.imageEndOffset)")
        }
        if result.exitCode != 0 { throw ExitCode(result.exitCode) }
    }

    func percent(_ a: UInt64, _ b: UInt64) -> String {
        b == 0 ? "0.00%" : String(format: "%.2f%%", Double(a) * 100 / Double(b))
    }
}
