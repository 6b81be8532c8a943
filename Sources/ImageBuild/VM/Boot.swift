import Foundation
import Host

/// Boots a VM disk under QEMU with the image's own kernel and initramfs and waits for a marker on
/// the serial console. KVM is used when it really runs a guest here (probed with a short timeout),
/// otherwise software emulation (TCG), which is reported.
public struct BootCheck: Sendable {
    /// auto, kvm or tcg (`imgbench boot --accel`, `imgbench run --accel`).
    public typealias Accelerator = QemuInvocation.Accelerator

    public var disk: String
    public var kernel: String
    public var initrd: String?
    public var marker = "imgbench-boot-ok"
    public var timeout: Double = 180
    public var memoryMiB = 1024
    public var cpus = 2
    public var accelerator = Accelerator.auto
    /// The root device (`/dev/vda3` for a `vm-boot=firmware` disk: report.json's kernelCommandLine).
    public var root = "/dev/vda"

    /// The root device a build's kernel command line names (report.json), else `/dev/vda`.
    public static func root(of commandLine: String?) -> String {
        commandLine?.split(separator: " ").first { $0.hasPrefix("root=") }.map { String($0.dropFirst("root=".count)) } ?? "/dev/vda"
    }

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
        return "root=\(root) rw console=ttyS0 panic=-1 init=/bin/echo -- -e \(escaped)"
    }

    /// The QEMU invocation: the disk as a snapshot (the check writes nothing into it).
    func invocation(accel: String) -> QemuInvocation {
        var q = QemuInvocation(kernel: kernel, initrd: initrd, append: commandLine, accelerator: accel)
        q.memoryMiB = memoryMiB
        q.cpus = cpus
        q.drives = [.init(file: disk, format: "qcow2", snapshot: true)]
        return q
    }

    public func run() throws -> Result {
        let (accel, note) = QemuInvocation.choose(accelerator, kernel: kernel)
        let start = Date()
        let seen = MarkerWatch(marker: marker)
        let r = try Command.run(invocation(accel: accel).argv, timeout: timeout) { chunk in seen.feed(chunk) }
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
