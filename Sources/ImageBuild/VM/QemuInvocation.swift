import Foundation
import Host

/// One QEMU command line, the one every VM boot of imgbench uses (the boot check, the runtime
/// suite's VM side, a measured workload in a booted VM): qemu-system-x86_64 on q35 with the
/// image's kernel and initramfs passed directly, no display, no default devices, the serial
/// console on stdio and `-no-reboot` (so a guest that panics or powers off ends QEMU); then the
/// virtio drives and an optional user-mode network. A firmware boot (`Firmware.bios`, `.uefi`)
/// has no `-kernel`: SeaBIOS or OVMF boots the first disk as a user's VM does. The process is
/// started by `Command`.
public struct QemuInvocation: Sendable {
    /// What a caller asks for; `auto` is KVM when it really runs a guest here, else TCG.
    public enum Accelerator: String, Sendable, CaseIterable { case auto, kvm, tcg }

    /// A virtio disk.
    public struct Drive: Sendable {
        public var file: String
        public var format: String
        /// Writes go to a temporary overlay (in TMPDIR), not into the file.
        public var snapshot = false
        public var readOnly = false
        /// The firmware boots from the drive with the lowest index (a firmware boot's disk).
        public var bootIndex: Int?

        public init(file: String, format: String, snapshot: Bool = false, readOnly: Bool = false, bootIndex: Int? = nil) {
            self.file = file
            self.format = format
            self.snapshot = snapshot
            self.readOnly = readOnly
            self.bootIndex = bootIndex
        }

        var options: String {
            "file=\(file),format=\(format)" + (snapshot ? ",snapshot=on" : "") + (readOnly ? ",readonly=on" : "")
        }

        /// The arguments of the `n`th drive.
        func arguments(_ n: Int) -> [String] {
            guard let bootIndex else { return ["-drive", "file=\(file),if=virtio,format=\(format)" + (snapshot ? ",snapshot=on" : "") + (readOnly ? ",readonly=on" : "")] }
            return ["-drive", "if=none,id=vd\(n),\(options)", "-device", "virtio-blk-pci,drive=vd\(n),bootindex=\(bootIndex)"]
        }
    }

    /// What starts the guest.
    public enum Firmware: Sendable, Equatable {
        /// QEMU loads the kernel and initramfs itself (`-kernel`, `-initrd`, `-append`).
        case direct
        /// SeaBIOS, QEMU's default firmware, boots the disk's MBR.
        case bios
        /// OVMF boots the disk's ESP: its code read-only, its variables a copy per boot.
        case uefi(code: String, vars: String)
    }

    /// QEMU's user-mode network on a virtio NIC (the guest is 10.0.2.15, the host 10.0.2.2).
    public struct UserNetwork: Sendable {
        /// Host TCP ports on 127.0.0.1 forwarded to the same port in the guest.
        public var forwardedPorts: [Int] = []
        /// Host UDP ports on 127.0.0.1 forwarded to the same port in the guest.
        public var forwardedUDPPorts: [Int] = []
        /// Host ports on 127.0.0.1 forwarded to other ports in the guest.
        public var forwards: [Forward] = []
        /// The NIC's option ROM (`""`: none, which a direct kernel boot does not need, and which
        /// keeps the firmware from trying a network boot).
        public var romfile: String?

        public struct Forward: Sendable, Equatable {
            public var host: Int
            public var guest: Int
            public init(host: Int, guest: Int) {
                self.host = host
                self.guest = guest
            }
        }

        public init(forwardedPorts: [Int] = [], forwardedUDPPorts: [Int] = [], forwards: [Forward] = [], romfile: String? = nil) {
            self.forwardedPorts = forwardedPorts
            self.forwardedUDPPorts = forwardedUDPPorts
            self.forwards = forwards
            self.romfile = romfile
        }

        var arguments: [String] {
            let all = forwardedPorts.map { Forward(host: $0, guest: $0) } + forwards
            let netdev = (["user,id=n0"] + all.map { "hostfwd=tcp:127.0.0.1:\($0.host)-:\($0.guest)" }
                + forwardedUDPPorts.map { "hostfwd=udp:127.0.0.1:\($0)-:\($0)" }).joined(separator: ",")
            return ["-netdev", netdev, "-device", "virtio-net-pci,netdev=n0" + (romfile.map { ",romfile=\($0)" } ?? "")]
        }
    }

    /// The kernel of a direct boot (nil with `firmware` bios or uefi).
    public var kernel: String?
    public var initrd: String?
    public var firmware = Firmware.direct
    /// The kernel command line.
    public var append: String
    /// "kvm" or "tcg" (a resolved `Accelerator`: see `choose`).
    public var accelerator: String
    public var memoryMiB = 1024
    public var cpus = 2
    public var drives: [Drive] = []
    public var network: UserNetwork?

    public init(kernel: String, initrd: String?, append: String, accelerator: String) {
        self.kernel = kernel
        self.initrd = initrd
        self.append = append
        self.accelerator = accelerator
    }

    /// A boot by the firmware from the first drive whose `bootIndex` is set.
    public init(firmware: Firmware, accelerator: String) {
        self.kernel = nil
        self.initrd = nil
        self.append = ""
        self.firmware = firmware
        self.accelerator = accelerator
    }

    /// The command line, program first.
    public var argv: [String] {
        var a = ["qemu-system-x86_64", "-machine", "q35,accel=\(accelerator)", "-m", "\(memoryMiB)", "-smp", "\(cpus)",
                 "-nographic", "-nodefaults", "-serial", "stdio"]
        switch firmware {
        case .direct:
            // A guest that panics or powers off ends QEMU; a firmware may reset on purpose.
            a.append("-no-reboot")
            if let kernel { a += ["-kernel", kernel, "-append", append] }
        case .bios:
            break
        case let .uefi(code, vars):
            a += ["-drive", "if=pflash,format=raw,unit=0,readonly=on,file=\(code)", "-drive", "if=pflash,format=raw,unit=1,file=\(vars)"]
        }
        for (n, d) in drives.enumerated() { a += d.arguments(n) }
        if accelerator == "kvm" { a += ["-cpu", "host"] }
        if firmware == .direct, let initrd { a += ["-initrd", initrd] }
        if let network { a += network.arguments }
        return a
    }

    /// Whether KVM runs a guest here: /dev/kvm must open and a guest must start printing within
    /// a few seconds (on some hosts QEMU aborts or hangs with KVM).
    public static func probeKVM(kernel: String) -> (ok: Bool, note: String?) {
        guard FileManager.default.isWritableFile(atPath: "/dev/kvm") else { return (false, "/dev/kvm is not available") }
        var probe = QemuInvocation(kernel: kernel, initrd: nil, append: "console=ttyS0 panic=-1 earlyprintk=ttyS0", accelerator: "kvm")
        probe.memoryMiB = 256
        probe.cpus = 1
        let r = try? Command.run(probe.argv, timeout: 8)
        guard let r else { return (false, "qemu-system-x86_64 did not start") }
        if r.output.contains("Linux version") { return (true, nil) }
        let reason = Command.tail(r.output, lines: 2)
        return (false, "KVM is present but does not run a guest here (\(reason.isEmpty ? "no console output in 8 s" : reason))")
    }

    /// The accelerator to use for `asked`, probing KVM with `kernel` for `auto`, and a note when
    /// it is software emulation (TCG).
    public static func choose(_ asked: Accelerator, kernel: String) -> (name: String, note: String?) {
        switch asked {
        case .tcg: return ("tcg", "software emulation (TCG) as asked")
        case .kvm: return ("kvm", nil)
        case .auto:
            let p = probeKVM(kernel: kernel)
            return p.ok ? ("kvm", nil) : ("tcg", "software emulation (TCG): \(p.note ?? "KVM unavailable")")
        }
    }
}
