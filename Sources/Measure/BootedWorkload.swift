import Foundation
import Host
import ImageBuild
import QcowIO
import RecipePlan

/// A workload step run in a booted VM: the base disk under a new qcow2 overlay (so the bytes the
/// guest writes can be counted), the image's kernel and initramfs, and PID 1 a shell reading a
/// script from a second, read-only disk: it mounts what a shell needs, brings up QEMU's user-mode
/// network, runs the step's command with its environment and working directory, prints the
/// guest's start and end times between markers on the serial console, and powers off.
///
/// KVM is used when it really runs a guest here (QemuInvocation's probe); otherwise QEMU emulates
/// the CPU (TCG), and the figure measures the emulator as much as the storage: the result says so.
struct BootedWorkload {
    var disk: String
    var kernel: String
    var initrd: String?
    var argv: [String]
    var environment: [KeyValue]
    var workdir: String
    var timeout: Double
    var cpus = 2
    var memoryMiB = 1024
    /// The root device: `/dev/vda3` for a `vm-boot=firmware` disk (`BootCheck.root(of:)`).
    var root = "/dev/vda"

    struct Outcome {
        var seconds: Double
        var bytes: UInt64
        var accelerator: String
        var note: String?
    }

    static let begin = "IMGBENCH-COW-BEGIN"
    static let end = "IMGBENCH-COW-END"

    /// Single-quoted for sh.
    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    var script: String {
        let env = ["PATH=\(Sandbox.defaultPath)", "HOME=/root"] + environment.map { "\($0.key)=\($0.value)" }
        return """
            # imgbench measure cow: PID 1 of the VM, read from a read-only disk.
            export PATH=\(Sandbox.defaultPath)
            mount -t proc proc /proc; mountpoint -q /sys || mount -t sysfs sysfs /sys; mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
            mount -t tmpfs -o mode=755 tmpfs /run; mount -t tmpfs -o mode=1777 tmpfs /tmp
            mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
            echo imgbench > /proc/sys/kernel/hostname
            if command -v ip >/dev/null 2>&1; then
              ip link set lo up; ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; ip route add default via 10.0.2.2
            fi
            echo "nameserver 10.0.2.3" > /run/resolv.conf && mount --bind /run/resolv.conf /etc/resolv.conf 2>/dev/null
            mkdir -p \(Self.quote(workdir)) && cd \(Self.quote(workdir))
            echo "\(Self.begin)"
            S=$(date +%s.%N)
            env -i \(env.map(Self.quote).joined(separator: " ")) \(argv.map(Self.quote).joined(separator: " "))
            RC=$?
            E=$(date +%s.%N)
            echo "\(Self.end) $RC $S $E"
            sync
            echo o > /proc/sysrq-trigger
            sleep 30

            """
    }

    func run(in dir: String, onOutput: @escaping @Sendable (String) -> Void) throws -> Outcome {
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let overlay = "\(dir)/overlay.qcow2", agent = "\(dir)/agent.img"
        try QcowImage.create(path: overlay, options: Qcow2CreateOptions(
            virtualSize: 0, backingFile: URL(fileURLWithPath: disk).standardizedFileURL.path, backingFormat: "qcow2")).close()
        var bytes = Data(script.utf8)
        bytes.append(Data(repeating: UInt8(ascii: "\n"), count: (512 - bytes.count % 512) % 512))
        try bytes.write(to: URL(fileURLWithPath: agent))

        let probe = QemuInvocation.probeKVM(kernel: kernel)
        let accel = probe.ok ? "kvm" : "tcg"
        var qemu = QemuInvocation(kernel: kernel, initrd: initrd,
                                  append: "root=\(root) rw console=ttyS0 quiet loglevel=1 net.ifnames=0 panic=-1 init=/bin/sh -- /dev/vdb",
                                  accelerator: accel)
        qemu.memoryMiB = memoryMiB
        qemu.cpus = cpus
        qemu.drives = [.init(file: overlay, format: "qcow2"), .init(file: agent, format: "raw", readOnly: true)]
        qemu.network = .init(romfile: "")
        let r = try Command.run(qemu.argv, timeout: timeout, outputLimit: 1 << 20, onOutput: onOutput)
        if r.timedOut {
            throw BuildError.invalid("the booted VM (\(accel)) did not finish the workload within \(Int(timeout)) s; it was stopped")
        }
        // The serial console ends lines with CR LF, one Character in Swift: split on any newline.
        guard let line = r.output.split(whereSeparator: \.isNewline).map({ $0.trimmingCharacters(in: .whitespaces) })
            .last(where: { $0.hasPrefix(Self.end) }) else {
            throw BuildError.invalid("the booted VM (\(accel)) ended without running the workload; its console ends:\n\(Command.tail(r.output, lines: 15))")
        }
        let f = line.split(separator: " ")
        guard f.count == 4, let rc = Int32(f[1]), let s = Double(f[2]), let e = Double(f[3]) else {
            throw BuildError.invalid("the booted VM printed a malformed result line: \(line)")
        }
        guard rc == 0 else {
            throw BuildError.invalid("the workload failed in the booted VM (exit \(rc)); its console ends:\n\(Command.tail(r.output, lines: 15))")
        }
        let img = try QcowImage(path: overlay)
        defer { try? img.close() }
        let note = accel == "tcg"
            ? "booted VM under software emulation (TCG; \(probe.note ?? "KVM unavailable")): the time measures the emulator too, not comparable with the other rows; downloads are timed here (no shared package cache)"
            : "booted VM (KVM); downloads are timed here (no shared package cache)"
        return Outcome(seconds: e - s, bytes: try AllocationMap.compute(img).chain[0].allocatedBytes, accelerator: accel, note: note)
    }
}
