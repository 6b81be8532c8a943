import ArgumentParser
import Foundation
import ImageBuild

struct BootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot a built VM disk under QEMU and wait for a marker on the serial console.",
        discussion: "Exit 0 only when the marker appears within the timeout. KVM is used when it really runs a guest here; otherwise software emulation (TCG), which is said.")

    @Argument(help: "A build's output folder (out/NAME) or a qcow2 disk (then give --kernel).", transform: absolutePath) var image: String
    @Option(help: "Kernel (default: the build's vm/boot/vmlinuz).", transform: absolutePath) var kernel: String?
    @Option(help: "Initramfs (default: the build's vm/boot/initrd.img).", transform: absolutePath) var initrd: String?
    @Option(help: "Seconds to wait for the marker.") var timeout: Double = 300
    @Option(help: "The text to wait for.") var marker = "imgbench-boot-ok"
    @Option(help: "The accelerator: kvm when it really runs a guest here (probed), else tcg.") var accel: BootCheck.Accelerator = .auto
    @Option(help: "table or json.") var format: OutputFormat = .table

    func run() throws {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: image, isDirectory: &isDir)
        let disk = isDir.boolValue ? "\(image)/vm/disk.qcow2" : image
        let k = kernel ?? (isDir.boolValue ? "\(image)/vm/boot/vmlinuz" : nil)
        let i = initrd ?? (isDir.boolValue && FileManager.default.fileExists(atPath: "\(image)/vm/boot/initrd.img") ? "\(image)/vm/boot/initrd.img" : nil)
        guard let k, FileManager.default.fileExists(atPath: k) else {
            printErr("imgbench: error: \(image): no kernel; give --kernel or a build folder holding vm/boot/vmlinuz")
            throw ExitCode(1)
        }
        guard FileManager.default.fileExists(atPath: disk) else {
            printErr("imgbench: error: \(disk): no such disk")
            throw ExitCode(1)
        }
        var check = BootCheck(disk: disk, kernel: k, initrd: i)
        check.timeout = timeout
        check.marker = marker
        check.accelerator = accel
        let result: BootCheck.Result
        do { result = try check.run() } catch let e where isReported(e) {
            printErr("imgbench: error: \(e)")
            throw ExitCode(1)
        }
        switch format {
        case .json: printOut(try JSONOutput.string(result))
        case .table:
            if let n = result.note { printErr("note: \(n)") }
            printOut(result.reachedMarker
                ? "booted: '\(marker)' on the serial console after " + String(format: "%.1f s", result.seconds) + " (\(result.accelerator))"
                : "not booted: no '\(marker)' within \(Int(timeout)) s (\(result.accelerator)); last console lines:\n\(result.consoleTail)")
        }
        if !result.reachedMarker { throw ExitCode(1) }
    }
}
