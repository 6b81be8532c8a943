import Foundation
import FuzzDriver
import Gate
import ImageBuild

// libFuzzer target: any bytes as a result file, read the way `imgbench report` and `imgbench
// check` read them; a build report that decodes also goes through the size gate, against itself
// and against itself reversed less a step. Built and run by bench/fuzz.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReport(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(UnsafeBufferPointer(start: data, count: size))
    var book = ReportBook()
    if (try? book.add(bytes, path: "report.json")) != nil {
        _ = book.markdown()
        for t in book.tables { _ = book.svg(t) }
    }
    if let report = try? BuildReport.decode(bytes, path: "report.json") {
        var other = report
        other.steps = Array(report.steps.reversed().dropFirst())
        _ = SizeGate.compare(report: report, baseline: report, budget: Budget())
        _ = SizeGate.compare(report: other, baseline: report, budget: Budget())
    }
    return 0
}

exit(imgbench_fuzz_main(CommandLine.argc, CommandLine.unsafeArgv) { fuzzReport($0, $1) })
