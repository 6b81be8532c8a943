import ArgumentParser
import Foundation
import ImageBuild

struct BootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot a built VM disk under QEMU and wait until it is up.",
        discussion: """
            --firmware kernel (the default for a vm-boot=kernel disk): QEMU is given the kernel, and the check waits for a marker the root filesystem's echo prints. \
            --firmware uefi (the default for a vm-boot=firmware disk) or bios: OVMF or SeaBIOS boots the disk with no -kernel, as a user's VM does, and the check waits for the login prompt on the serial console and for each EXPOSEd TCP port to answer through a forwarded host port. \
            Exit 0 only when that happens within the timeout. KVM is used when it really runs a guest here; otherwise software emulation (TCG), which is said.
            """)

    enum Firmware: String, ExpressibleByArgument, CaseIterable { case kernel, bios, uefi }

    @Argument(help: "A build's output folder (out/NAME) or a qcow2 disk (then give --kernel).", transform: absolutePath) var image: String
    @Option(help: "Kernel (default: the build's vm/boot/vmlinuz).", transform: absolutePath) var kernel: String?
    @Option(help: "Initramfs (default: the build's vm/boot/initrd.img).", transform: absolutePath) var initrd: String?
    @Option(help: "Seconds to wait for the marker.") var timeout: Double = 300
    @Option(help: "The text to wait for.") var marker = "imgbench-boot-ok"
    @Option(help: "The accelerator: kvm when it really runs a guest here (probed), else tcg.") var accel: BootCheck.Accelerator = .auto
    @Option(help: "table or json.") var format: OutputFormat = .table
    @Option(help: "kernel (direct kernel boot), uefi (OVMF) or bios (SeaBIOS); default: uefi for a vm-boot=firmware build, else kernel.") var firmware: Firmware?

    func run() throws {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: image, isDirectory: &isDir)
        let disk = isDir.boolValue ? "\(image)/vm/disk.qcow2" : image
        let reportPath = "\(image)/report.json"
        let report = isDir.boolValue && FileManager.default.fileExists(atPath: reportPath) ? try BuildReport.load(reportPath) : nil
        let chosen = firmware ?? (report?.outputs.vmBoot == "firmware" ? .uefi : .kernel)
        if chosen != .kernel {
            return try bootFirmware(disk: disk, kind: chosen == .bios ? .bios : .uefi, report: report)
        }
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
        check.root = BootCheck.root(of: report?.outputs.kernelCommandLine)
        check.timeout = timeout
        check.marker = marker
        check.accelerator = accel
        let result = try reportingErrors { try check.run() }
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

    /// `body`'s result; an error imgbench reports becomes its one error line and exit 1.
    func reportingErrors<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e where isReported(e) {
            printErr("imgbench: error: \(e)")
            throw ExitCode(1)
        }
    }

    /// A boot by the firmware: the login prompt, then the EXPOSEd TCP ports answering.
    func bootFirmware(disk: String, kind: FirmwareBoot.Kind, report: BuildReport?) throws {
        guard FileManager.default.fileExists(atPath: disk) else {
            printErr("imgbench: error: \(disk): no such disk")
            throw ExitCode(1)
        }
        var boot = FirmwareBoot(disk: disk, kind: kind)
        boot.timeout = timeout
        boot.accelerator = accel
        boot.ports = FirmwareBoot.tcpPorts(exposed: report?.outputs.exposedPorts ?? [])
        let k = kernel ?? report?.outputs.kernel.map { "\(image)/\($0)" }
        boot.probeKernel = k.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        let result = try reportingErrors { try boot.run() }
        switch format {
        case .json: printOut(try JSONOutput.string(result))
        case .table:
            if let n = result.note { printErr("note: \(n)") }
            if let s = result.secondsToLogin {
                printOut("booted (\(kind.rawValue), \(result.accelerator)): login prompt after " + String(format: "%.1f s", s))
            } else {
                printOut("not booted (\(kind.rawValue), \(result.accelerator)): no login prompt within \(Int(timeout)) s; last console lines:\n\(result.consoleTail)")
            }
            for p in result.ports {
                printOut("  port \(p.guest)/tcp (host 127.0.0.1:\(p.host)): " + (p.seconds.map { String(format: "answered after %.1f s", $0) } ?? "did not answer"))
            }
        }
        if !result.succeeded { throw ExitCode(1) }
    }
}
