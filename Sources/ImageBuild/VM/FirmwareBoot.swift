import Foundation
import Host

/// Boots a `vm-boot=firmware` disk as a user's VM boots it: no `-kernel`, SeaBIOS (`bios`) or
/// OVMF (`uefi`) and GRUB from the disk, then systemd. Waits for the login prompt on the serial
/// console and then for each EXPOSEd TCP port to answer through a forwarded host port.
public struct FirmwareBoot: Sendable {
    public enum Kind: String, Codable, Sendable, CaseIterable { case bios, uefi }

    public var disk: String
    public var format = "qcow2"
    public var kind: Kind
    /// Guest TCP ports that must answer.
    public var ports: [Int] = []
    public var timeout: Double = 300
    public var memoryMiB = 1024
    public var cpus = 2
    public var accelerator = QemuInvocation.Accelerator.auto
    /// A kernel for the KVM probe (`QemuInvocation.probeKVM`); without one, `auto` is TCG.
    public var probeKernel: String?
    /// What marks the end of the boot on the serial console.
    public var marker = " login:"

    public init(disk: String, kind: Kind) {
        self.disk = disk
        self.kind = kind
    }

    public struct Port: Codable, Sendable {
        public var guest: Int
        public var host: Int
        public var answered: Bool
        /// Seconds from the start of QEMU until it answered.
        public var seconds: Double?
    }

    public struct Result: Codable, Sendable {
        public var firmware: Kind
        public var accelerator: String
        public var note: String?
        public var reachedLogin: Bool
        public var secondsToLogin: Double?
        public var ports: [Port]
        public var seconds: Double
        public var consoleTail: String

        public var succeeded: Bool { reachedLogin && ports.allSatisfy(\.answered) }
    }

    /// OVMF's code and a fresh copy of its variables in `scratch`: the 4M pair, else the 2M pair.
    static func ovmf(scratch: String) throws -> QemuInvocation.Firmware {
        let pairs = [("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
                     ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd")]
        guard let (code, vars) = pairs.first(where: { FileManager.default.fileExists(atPath: $0.0) && FileManager.default.fileExists(atPath: $0.1) }) else {
            throw BuildError.invalid("--firmware uefi: no OVMF in /usr/share/OVMF (scripts/install-deps.sh installs ovmf)")
        }
        let copy = "\(scratch)/\((vars as NSString).lastPathComponent)"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: vars, toPath: copy)
        return .uefi(code: code, vars: copy)
    }

    /// The TCP ports of a build's EXPOSEd ones (`8080/tcp`, `53/udp`): what its service answers on.
    public static func tcpPorts(exposed: [String]) -> [Int] {
        exposed.compactMap { p in p.hasSuffix("/udp") ? nil : Int(p.split(separator: "/")[0]) }
    }

    func invocation(accel: String, firmware: QemuInvocation.Firmware, forwards: [QemuInvocation.UserNetwork.Forward]) -> QemuInvocation {
        var q = QemuInvocation(firmware: firmware, accelerator: accel)
        q.memoryMiB = memoryMiB
        q.cpus = cpus
        q.drives = [.init(file: disk, format: format, snapshot: true, bootIndex: 0)]
        q.network = .init(forwards: forwards, romfile: "")
        return q
    }

    public func run() throws -> Result {
        let (accel, note): (String, String?) = probeKernel.map { QemuInvocation.choose(accelerator, kernel: $0) }
            ?? (accelerator == .kvm ? ("kvm", nil) : ("tcg", "software emulation (TCG)"))
        let scratch = NSTemporaryDirectory() + "imgbench-boot-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let firmware: QemuInvocation.Firmware = kind == .bios ? .bios : try FirmwareBoot.ovmf(scratch: scratch)
        let forwards = try ports.map { QemuInvocation.UserNetwork.Forward(host: try TCPPort.free(), guest: $0) }
        let start = Date()
        let stop = StopFlag()
        let watch = BootWatch(marker: marker, start: start)
        let answered = AnsweredPorts()
        // Polls the ports once the login prompt is up; stops QEMU when all answered.
        let poller = Thread {
            while !stop.isSet {
                if watch.loginSeconds != nil {
                    for f in forwards where answered.seconds(f.guest) == nil && TCPPort.answers(port: f.host) {
                        answered.set(f.guest, Date().timeIntervalSince(start))
                    }
                    if forwards.allSatisfy({ answered.seconds($0.guest) != nil }) { stop.set() }
                }
                if !stop.isSet { usleep(500_000) }
            }
        }
        poller.start()
        let r: Command.Result
        do {
            r = try Command.run(invocation(accel: accel, firmware: firmware, forwards: forwards).argv, timeout: timeout, stopWhen: stop) { watch.feed($0) }
        } catch {
            stop.set()
            throw error
        }
        stop.set()
        let login = watch.loginSeconds
        return Result(firmware: kind, accelerator: accel, note: note, reachedLogin: login != nil, secondsToLogin: login,
                      ports: forwards.map { Port(guest: $0.guest, host: $0.host, answered: answered.seconds($0.guest) != nil, seconds: answered.seconds($0.guest)) },
                      seconds: Date().timeIntervalSince(start), consoleTail: Command.tail(r.output, lines: 15))
    }
}

/// Watches console output for the marker and keeps when it appeared.
final class BootWatch: @unchecked Sendable {
    private let watch: MarkerWatch
    private let start: Date
    private let lock = NSLock()
    private var seen: Double?

    init(marker: String, start: Date) {
        watch = MarkerWatch(marker: marker)
        self.start = start
    }

    func feed(_ chunk: String) {
        watch.feed(chunk)
        if watch.found { lock.withLock { if seen == nil { seen = Date().timeIntervalSince(start) } } }
    }

    var loginSeconds: Double? { lock.withLock { seen } }
}

/// The guest ports that answered, with when.
final class AnsweredPorts: @unchecked Sendable {
    private let lock = NSLock()
    private var answered: [Int: Double] = [:]

    func set(_ port: Int, _ seconds: Double) { lock.withLock { answered[port] = seconds } }
    func seconds(_ port: Int) -> Double? { lock.withLock { answered[port] } }
}
