import Foundation
import FuzzDriver
import RecipePlan

// libFuzzer target: any bytes as a recipe. The parser may refuse them (a RecipeError); it must not
// crash, trap or run away. Built and run by bench/fuzz.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecipeParser(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = try? RecipeParser(file: "Containerfile", buildArgs: ["B": "b"]).parse(text)
    return 0
}

exit(imgbench_fuzz_main(CommandLine.argc, CommandLine.unsafeArgv) { fuzzRecipeParser($0, $1) })
