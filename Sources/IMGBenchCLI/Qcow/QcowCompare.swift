import ArgumentParser
import QcowIO

struct QcowCompare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare the guest contents of two images (raw or qcow2, any chain).",
        discussion: "Exit status as qemu-img compare: 0 identical, 1 different, 2 error.")

    @Argument(help: "First image.", transform: absolutePath) var first: String
    @Argument(help: "Second image.", transform: absolutePath) var second: String
    @Flag(help: "Fail when the virtual sizes differ (otherwise the tail of the larger must read as zeros).")
    var strict = false

    func run() throws {
        do {
            let result = try ImageComparison.compare(try DiskImages.open(first), try DiskImages.open(second), strict: strict)
            switch result {
            case .identical:
                printOut("Images are identical.")
            case let .sizeMismatch(a, b):
                printOut("Strict mode: image size mismatch (\(a) and \(b) bytes)")
                throw ExitCode(1)
            case let .differ(offset):
                printOut("Content mismatch at offset \(offset)!")
                throw ExitCode(1)
            }
        } catch let e as QcowError {
            printErr("imgbench: error: \(e.description)")
            throw ExitCode(2)
        }
    }
}
