import Foundation
import Host
import QcowIO
import OCI
import Layers
import RecipePlan

/// Boots a VM disk under QEMU with the image's own kernel and initramfs and waits for a marker on
/// the serial console. KVM is used when it really runs a guest here (probed with a short timeout),
/// otherwise software emulation (TCG), which is reported.
public struct BootCheck: Sendable {
    public enum Accelerator: String, Sendable, CaseIterable { case auto, kvm, tcg }

    public var disk: String
    public var kernel: String
    public var initrd: String?
    public var marker = "imgbench-boot-ok"
    public var timeout: Double = 180
    public var memoryMiB = 1024
    public var cpus = 2
    public var accelerator = Accelerator.auto

    public init(disk: String, kernel: String, initrd: String?) {
        self.disk = disk
        self.kernel = kernel
        self.initrd = initrd
    }

    public struct Result: Codable, Sendable {
        public var reachedMarker: Bool
        public var accelerator: String
        /// Why KVM was not used, when it was not.
        public var note: String?
        public var seconds: Double
        public var consoleTail: String
    }

    /// The kernel command line: the disk is the root filesystem, and init is `/bin/echo` printing
    /// the marker, so the check needs nothing inside the image but its kernel, its initramfs and
    /// coreutils; when init exits the kernel panics and `panic=-1` with `-no-reboot` ends QEMU.
    /// The marker is passed hex-escaped (`echo -e`), so the kernel printing its own command line
    /// does not show it: only the root filesystem's echo can.
    public var commandLine: String {
        let escaped = marker.utf8.map { String(format: "\\x%02x", $0) }.joined()
        return "root=/dev/vda rw console=ttyS0 panic=-1 init=/bin/echo -- -e \(escaped)"
    }

    func qemuArgs(accel: String) -> [String] {
        var a = ["qemu-system-x86_64", "-machine", "q35,accel=\(accel)", "-m", "\(memoryMiB)", "-smp", "\(cpus)",
                 "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
                 "-kernel", kernel, "-append", commandLine,
                 "-drive", "file=\(disk),if=virtio,format=qcow2,snapshot=on"]
        if accel == "kvm" { a += ["-cpu", "host"] }
        if let i = initrd { a += ["-initrd", i] }
        return a
    }

    /// Whether KVM runs a guest here: /dev/kvm must open and a guest must start printing within
    /// a few seconds (on some hosts QEMU aborts or hangs with KVM).
    public static func probeKVM(kernel: String) -> (ok: Bool, note: String?) {
        guard FileManager.default.isWritableFile(atPath: "/dev/kvm") else { return (false, "/dev/kvm is not available") }
        let r = try? Command.run(["qemu-system-x86_64", "-machine", "q35,accel=kvm", "-cpu", "host", "-m", "256",
                                  "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-kernel", kernel,
                                  "-append", "console=ttyS0 panic=-1 earlyprintk=ttyS0"], timeout: 8)
        guard let r else { return (false, "qemu-system-x86_64 did not start") }
        if r.output.contains("Linux version") { return (true, nil) }
        let reason = Command.tail(r.output, lines: 2)
        return (false, "KVM is present but does not run a guest here (\(reason.isEmpty ? "no console output in 8 s" : reason))")
    }

    public func run() throws -> Result {
        var accel = "tcg"
        var note: String?
        switch accelerator {
        case .tcg: note = "software emulation (TCG) as asked"
        case .kvm: accel = "kvm"
        case .auto:
            let p = BootCheck.probeKVM(kernel: kernel)
            if p.ok { accel = "kvm" } else { note = "software emulation (TCG): \(p.note ?? "KVM unavailable")" }
        }
        let start = Date()
        let seen = MarkerWatch(marker: marker)
        let r = try Command.run(qemuArgs(accel: accel), timeout: timeout) { chunk in seen.feed(chunk) }
        let found = seen.found || r.output.contains(marker)
        return Result(reachedMarker: found, accelerator: accel, note: note, seconds: Date().timeIntervalSince(start),
                      consoleTail: Command.tail(r.output, lines: 15))
    }
}

/// Watches console output for the marker (which may arrive split across reads).
final class MarkerWatch: @unchecked Sendable {
    let marker: String
    private var window = ""
    private(set) var found = false
    private let lock = NSLock()

    init(marker: String) { self.marker = marker }

    func feed(_ chunk: String) {
        lock.lock()
        defer { lock.unlock() }
        window = String((window + chunk).suffix(marker.count * 4 + chunk.count))
        if window.contains(marker) { found = true }
    }
}
