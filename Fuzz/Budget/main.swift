import Foundation
import FuzzDriver
import Gate

// libFuzzer target: any bytes as a size budget (YAML). Refusing them is fine; crashing (in Yams or
// here) is not. Built and run by bench/fuzz.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBudget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let budget = try? Budget.parse(text, file: "budget.yaml") {
        for figure in GateFigure.allCases {
            _ = budget.limit(recipe: "r", step: (1, "RUN x"), figure: figure).allowedBytes(from: .max)
        }
    }
    return 0
}

exit(imgbench_fuzz_main(CommandLine.argc, CommandLine.unsafeArgv) { fuzzBudget($0, $1) })
