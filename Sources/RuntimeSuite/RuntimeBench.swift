import Foundation
import Host
import ImageBuild

/// The runtime benchmark suite: runs workloads natively, in the container (runc, the build's
/// bundle) and in the VM (QEMU, the build's flattened disk), with the same CPUs and memory, and
/// collects the figures. Reads the hand-off manifest alone.
///
/// Nothing of the build is changed: the container runs on the bundle's rootfs read-only (through
/// a runtime copy of its config.json), the VM on a snapshot of the disk. Every program started is
/// stopped, and every temporary file removed, on success, failure, timeout and Ctrl-C.
public final class RuntimeBench {
    public struct Options: Sendable {
        public var cpus = 1
        public var memoryBytes: UInt64 = 1 << 30
        public var durationSeconds = 5
        /// Seconds each side may take (the VM: boot included) before it is stopped.
        public var timeout: Double = 300
        public var accelerator = BootCheck.Accelerator.auto
        public var sides: [Side] = Side.allCases
        /// Rounds: every side once per round, in turn; figures are medians, ratios the median of
        /// each round's ratio.
        public var repeats = 1
        /// The container's network: the host's (as the build steps run), or a bridge with NAT
        /// as Docker's default (`BridgeNetwork`).
        public var containerNetwork = ContainerNetwork.host
        /// The density experiment: the host memory the idle instances may take (their PSS), the
        /// share by which the probe figure (one more instance's start-up) may drop, and a cap.
        public var densityMemoryBytes: UInt64 = 2 << 30
        public var densityDrop = 0.5
        public var densityMax = 4

        public init() {}
    }

    /// Where the container's network is.
    public enum ContainerNetwork: String, Sendable, CaseIterable {
        case host
        /// A namespace on a bridge, traffic out masqueraded, the server's ports reached by DNAT.
        case bridge
    }

    public let manifestPath: String
    public let handoff: Handoff
    /// The folder the manifest's paths are relative to.
    public let folder: String
    public let options: Options
    let progress: @Sendable (String) -> Void

    public init(manifest: String, options: Options, progress: @escaping @Sendable (String) -> Void) throws {
        let (h, folder) = try Handoff.load(manifest)
        manifestPath = manifest
        handoff = h
        self.folder = folder
        self.options = options
        self.progress = progress
        let available = Processors.count
        guard options.cpus >= 1, options.cpus <= available else {
            throw BuildError.invalid("--cpus \(options.cpus): this host has \(available) CPU\(available == 1 ? "" : "s")")
        }
        guard options.memoryBytes >= 128 << 20 else { throw BuildError.invalid("--memory must be at least 128M") }
        guard options.durationSeconds >= 1 else { throw BuildError.invalid("--duration must be at least 1 second") }
        guard options.repeats >= 1 else { throw BuildError.invalid("--repeat must be at least 1") }
        guard options.densityDrop > 0, options.densityDrop < 1 else { throw BuildError.invalid("--density-drop must be between 0 and 1 (a share, e.g. 0.1)") }
        guard options.densityMax >= 1 else { throw BuildError.invalid("--density-max must be at least 1") }
        if options.sides.contains(.container) && h.container == nil {
            throw BuildError.invalid("\(manifest): the build has no container image (built with --images vm?)")
        }
        if options.sides.contains(.vm) && h.vm == nil {
            throw BuildError.invalid("\(manifest): the build has no bootable VM disk (built with --images container?)")
        }
    }

    var parameters: WorkloadParameters {
        WorkloadParameters(cpus: options.cpus, memoryBytes: options.memoryBytes, durationSeconds: options.durationSeconds)
    }

    /// The host CPUs every side is pinned to.
    var cpuList: String { options.cpus == 1 ? "0" : "0-\(options.cpus - 1)" }

    func path(_ relative: String) -> String { relative.hasPrefix("/") ? relative : "\(folder)/\(relative)" }

    /// Runs each workload on each side asked for, in the order native, container, VM.
    public func run(workloads names: [String]) throws -> RunReport {
        let jobs = try names.map { n -> Job in
            if let w = Workload.named(n) { return .workload(w) }
            if let e = Experiment.named(n) { return .experiment(e) }
            throw BuildError.invalid("unknown workload '\(n)' (known: \((Workload.all.map(\.name) + Experiment.all.map(\.name)).joined(separator: ", ")))")
        }
        try checkHost(jobs.compactMap { job -> Workload? in
            if case let .workload(w) = job { return w }
            return nil
        })
        let started = Date()
        // Scratch beside the bundle (the same filesystem as the container's files): the work
        // folders, the runtime bundle copy, the VM's agent disk.
        let scratch = "\(folder)/.imgbench-run-\(getpid())"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let removeScratch = Cleanup.register("remove \(scratch)") { try? FileManager.default.removeItem(atPath: scratch) }
        defer { Cleanup.run(removeScratch) }

        var accel: (name: String, note: String?)?
        var results: [RunReport.WorkloadResult] = []
        for job in jobs {
            var r: RunReport.WorkloadResult
            switch job {
            case let .workload(w):
                r = RunReport.WorkloadResult(workload: w.name, summary: w.summary, declared: handoff.recipe.workloads.contains(w.name),
                                             figures: w.figures, notes: w.notes)
                if !r.declared { r.notes.append("the recipe does not declare \(w.name) (# workloads=)") }
            case let .experiment(e):
                // Needs nothing in the image but a shell: always runs, declared or not.
                r = RunReport.WorkloadResult(workload: e.name, summary: e.summary, declared: true, figures: e.figures, notes: e.notes)
            }
            let name = r.workload
            // Density runs once: each round would start every instance again.
            let repeats = name == Experiment.density.name ? 1 : options.repeats
            var rounds: [Side: [RunReport.SideResult]] = [:]
            var stopped = Set<Side>()
            rounds: for round in 1...repeats {
                for side in Side.allCases where options.sides.contains(side) && !stopped.contains(side) {
                    if name == Experiment.density.name && side == .native { continue }
                    progress("\(name): \(side.rawValue)" + (repeats > 1 ? " (round \(round) of \(repeats))" : ""))
                    let work = "\(scratch)/\(side.rawValue)-\(name)"
                    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
                    var result: RunReport.SideResult
                    if side == .vm && accel == nil { accel = chooseAccelerator() }
                    switch (job, side) {
                    case let (.experiment(e), _):
                        result = measure(e, side: side, work: work, accelerator: side == .vm ? accel?.name : nil)
                    case let (.workload(w), .native):
                        result = try runNative(w, work: work)
                    case let (.workload(w), .container):
                        result = try runContainer(w, work: work)
                    case let (.workload(w), .vm):
                        result = try runVM(w, work: work, accelerator: accel!.name)
                    }
                    if side == .vm, let n = accel?.note { result.limits += "; \(n)" }
                    try? FileManager.default.removeItem(atPath: work)
                    rounds[side, default: []].append(result)
                    if result.status != .ok { stopped.insert(side) }
                    if result.status == .missingTool {
                        let rest = Side.allCases.drop { $0 != side }.dropFirst().filter { options.sides.contains($0) && $0 != .native }
                        if !rest.isEmpty {
                            r.notes.append("not run on \(rest.map(\.rawValue).joined(separator: " and ")): the image lacks \(result.missingTool ?? "a tool")")
                        }
                        break rounds
                    }
                }
            }
            r.native = RuntimeBench.combine(rounds[.native])
            r.container = RuntimeBench.combine(rounds[.container])
            r.vm = RuntimeBench.combine(rounds[.vm])
            r.container?.ratios = RuntimeBench.ratios(rounds[.container], to: rounds[.native])
            r.vm?.ratios = RuntimeBench.ratios(rounds[.vm], to: rounds[.native])
            // An experiment's figure no side gave (the firmware boot of a disk QEMU boots with
            // its kernel) is not a row; all stay when no side succeeded.
            if case .experiment = job, r.sides.contains(where: { $0.1.status == .ok }) {
                r.figures = r.figures.filter { spec in r.sides.contains { $0.1.figures.contains { $0.name == spec.name } } }
            }
            if let vm = r.vm, vm.emulated == true {
                r.notes.append("the VM ran under software emulation (TCG): its figures are not comparable to native")
            }
            results.append(r)
        }
        return RunReport(manifest: manifestPath, recipe: handoff.recipe.name, imageDigest: handoff.container?.imageDigest,
                         startedAt: ISO8601DateFormatter().string(from: started), host: RuntimeBench.host(),
                         settings: .init(cpus: options.cpus, cpuList: cpuList, memoryBytes: options.memoryBytes,
                                         durationSeconds: options.durationSeconds, timeoutSeconds: options.timeout,
                                         repeats: options.repeats),
                         results: results, provenance: .current(accelerator: accel?.name))
    }

    /// What `run` is asked for: a workload, or one of Sharma et al.'s experiments.
    enum Job {
        case workload(Workload)
        case experiment(Experiment)
    }

    /// One side's rounds as one result: the last round's when it did not succeed, else each
    /// figure's median, with every round's value in `samples` when there were several.
    static func combine(_ rounds: [RunReport.SideResult]?) -> RunReport.SideResult? {
        guard var r = rounds?.last else { return nil }
        guard let rounds, r.status == .ok, rounds.count > 1 else { return r }
        r.figures = r.figures.map { f in
            let values = rounds.compactMap { $0.figures.first { $0.name == f.name }?.value }
            var m = f
            m.value = median(values)
            m.samples = values
            return m
        }
        r.seconds = median(rounds.map(\.seconds))
        return r
    }

    /// Each figure over the native one of the same round; the median over the rounds where both
    /// succeeded. Nil when there is no such round.
    static func ratios(_ side: [RunReport.SideResult]?, to native: [RunReport.SideResult]?) -> [String: Double]? {
        guard let side, let native else { return nil }
        var perFigure: [String: [Double]] = [:]
        for (s, n) in zip(side, native) where s.status == .ok && n.status == .ok {
            for f in s.figures {
                if let nv = n.figures.first(where: { $0.name == f.name })?.value, nv > 0 { perFigure[f.name, default: []].append(f.value / nv) }
            }
        }
        return perFigure.isEmpty ? nil : perFigure.mapValues(median)
    }

    static func median(_ values: [Double]) -> Double { Statistics.median(values) ?? 0 }

    /// The host must have the tools of a native run and a server workload's client.
    func checkHost(_ workloads: [Workload]) throws {
        var needed = ["taskset"]
        if options.sides.contains(.container) { needed.append("runc") }
        if options.sides.contains(.vm) { needed.append("qemu-system-x86_64") }
        for w in workloads {
            if options.sides.contains(.native) { needed += w.tools }
            if w.isServer { needed += w.clientTools }
        }
        for t in needed { _ = try Command.resolve(t) }
    }

    // MARK: - Sides

    /// The same script on the host, pinned to the run's CPUs.
    func runNative(_ w: Workload, work: String) throws -> RunReport.SideResult {
        let id = RuntimeBench.newID()
        let port = try RuntimeBench.ports(for: w)
        let script = w.script(id: id, parameters: parameters, work: work, port: port)
        var r = execute(w, id: id, argv: ["taskset", "-c", cpuList, "/bin/sh", "-c", script], environment: nil,
                        client: ("127.0.0.1", port), side: "natively")
        r.limits = "pinned to CPU \(cpuList) (taskset); memory not limited"
        return r
    }

    /// The script as the process of a runtime copy of the bundle: the built rootfs read-only,
    /// tmpfs on /tmp and /run, the work folder (beside the bundle, on the host) on /var/tmp; runc
    /// pinned to the run's CPUs. The built bundle is not changed; the container is deleted on
    /// every way out.
    func runContainer(_ w: Workload, work: String) throws -> RunReport.SideResult {
        guard let c = handoff.container else { throw BuildError.invalid("no container image") }
        let bundle = path(c.bundle)
        let rootfs = URL(fileURLWithPath: "\(bundle)/rootfs").standardizedFileURL.path
        let runtime = work + ".bundle"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: runtime) }
        let id = RuntimeBench.newID()
        let port = try RuntimeBench.ports(for: w)
        let mountPoint = FileManager.default.fileExists(atPath: "\(rootfs)/var/tmp") ? "/var/tmp" : "/tmp"
        let script = w.script(id: id, parameters: parameters, work: "\(mountPoint)/imgbench", port: port, rootWork: "/var/lib/imgbench")
        // A workload that writes into the root runs on a copy-on-write overlay of the rootfs (as
        // a container's storage driver gives it), unmounted after the container.
        let overlay = w.writesRoot ? try RuntimeBench.overlayRoot(lower: rootfs, scratch: work + ".overlay") : nil
        defer { overlay?.remove() }
        let root = overlay?.merged ?? rootfs
        // The bridge outlives the container: made before it, removed after its deletion.
        var network: BridgeNetwork?
        defer { network?.remove() }
        if options.containerNetwork == .bridge {
            var published: [(Int, BridgeNetwork.PortProtocol)] = w.isServer ? [(port.control, .tcp)] : []
            if let data = port.data {
                published.append((data, .tcp))
                if w.dataPort == .tcpAndUDP { published.append((data, .udp)) }
            }
            network = try BridgeNetwork(publishing: published)
        }
        try RuntimeBench.writeRuntimeConfig(from: "\(bundle)/config.json", to: "\(runtime)/config.json", rootfs: root, readOnly: !w.writesRoot,
                                            args: ["/bin/sh", "-c", script], work: work, workMount: mountPoint,
                                            networkNamespace: network?.namespacePath)
        let name = "imgbench-run-\(id)"
        let delete = Cleanup.register("delete container \(name)") { _ = try? Command.run(["runc", "delete", "--force", name], timeout: 30) }
        defer { Cleanup.run(delete) }
        var r = execute(w, id: id, argv: ["taskset", "-c", cpuList, "runc", "run", "--bundle", runtime, name], environment: nil,
                        client: (network?.gatewayAddress ?? "127.0.0.1", port), side: "in the container")
        r.limits = "pinned to CPU \(cpuList) (taskset on runc); memory not limited: this host's cgroup layout refuses linux.resources; "
            + (network.map { "network: a bridge with NAT as Docker's default (namespace \($0.namespace), veth, MASQUERADE, the server's ports by DNAT to \($0.containerAddress))" }
               ?? "network: the host's")
            + (w.writesRoot ? "; root: an overlay (copy-on-write) over the image's rootfs" : "; root: the image's rootfs, read-only")
        return r
    }

    static func writeRuntimeConfig(from built: String, to runtime: String, rootfs: String, readOnly: Bool = true, args: [String],
                                   work: String, workMount: String, networkNamespace: String? = nil) throws {
        guard let data = FileManager.default.contents(atPath: built),
              var spec = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw HostError.io(path: built, message: "cannot read the bundle's runtime config")
        }
        var process = spec["process"] as? [String: Any] ?? [:]
        process["args"] = args
        process["user"] = ["uid": 0, "gid": 0]
        process["cwd"] = "/"
        process["terminal"] = false
        spec["process"] = process
        spec["root"] = ["path": rootfs, "readonly": readOnly]
        var mounts = spec["mounts"] as? [[String: Any]] ?? []
        mounts.append(["destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]])
        mounts.append(["destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]])
        mounts.append(["destination": workMount, "type": "bind", "source": work, "options": ["rbind", "rw"]])
        spec["mounts"] = mounts
        if let networkNamespace {
            var linux = spec["linux"] as? [String: Any] ?? [:]
            var namespaces = (linux["namespaces"] as? [[String: Any]] ?? []).filter { $0["type"] as? String != "network" }
            namespaces.append(["type": "network", "path": networkNamespace])
            linux["namespaces"] = namespaces
            spec["linux"] = linux
        }
        let out = try JSONSerialization.data(withJSONObject: spec, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try out.write(to: URL(fileURLWithPath: runtime))
    }

    /// A container's writable, copy-on-write root: an overlay of the rootfs, its upper and work
    /// folders in `scratch`; unmounted and removed by `remove()`, or by a Ctrl-C.
    struct OverlayRoot {
        let scratch: String
        let cleanup: Int
        var merged: String { "\(scratch)/merged" }

        func remove() {
            Cleanup.run(cleanup)
        }
    }

    static func overlayRoot(lower: String, scratch: String) throws -> OverlayRoot {
        let (upper, workdir, merged) = ("\(scratch)/upper", "\(scratch)/work", "\(scratch)/merged")
        for d in [upper, workdir, merged] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        let id = Cleanup.register("unmount the container's root \(merged)") {
            try? Mounts.unmount(merged)
            try? FileSystem.removeTree(scratch)
        }
        do {
            try Mounts.mount(source: "overlay", target: merged, type: "overlay", options: "lowerdir=\(lower),upperdir=\(upper),workdir=\(workdir)")
        } catch {
            Cleanup.run(id)
            throw error
        }
        return OverlayRoot(scratch: scratch, cleanup: id)
    }

    /// KVM when it really runs a guest here (probed as the boot check does), else TCG.
    func chooseAccelerator() -> (name: String, note: String?) {
        // No VM disk, no kernel to probe with (runVM then says there is no VM disk).
        if options.accelerator == .auto && handoff.vm == nil { return ("tcg", nil) }
        return QemuInvocation.choose(options.accelerator, kernel: handoff.vm.map { path($0.boot.kernel) } ?? "")
    }

    /// Boots a snapshot of the flattened disk with the image's kernel and initramfs; PID 1 is
    /// `/bin/sh` reading the agent script from a second, read-only disk (so nothing is written
    /// into the image and nothing needs quoting on the kernel command line). The agent prints the
    /// protocol on the serial console and powers off; a server workload gets user-mode networking
    /// with a forwarded port and is stopped once its client is done.
    func runVM(_ w: Workload, work: String, accelerator: String) throws -> RunReport.SideResult {
        guard let vm = handoff.vm else { throw BuildError.invalid("no VM disk") }
        let id = RuntimeBench.newID()
        let port = try RuntimeBench.ports(for: w)
        let guestWork = "/var/tmp/imgbench"
        let agent = RuntimeBench.agentScript(id: id, network: w.isServer,
                                             workload: w.script(id: id, parameters: parameters, work: guestWork, port: port, rootWork: "/var/lib/imgbench"))
        let agentDisk = work + ".agent.img"
        defer { try? FileManager.default.removeItem(atPath: agentDisk) }
        var qemu = try agentVM(vm, agent: agent, disk: agentDisk, accelerator: accelerator)
        if w.isServer {
            qemu.network = .init(forwardedPorts: [port.control] + [port.data].compactMap { $0 },
                                 forwardedUDPPorts: w.dataPort == .tcpAndUDP ? [port.data].compactMap { $0 } : [])
        }
        let argv = ["taskset", "-c", cpuList] + qemu.argv
        // snapshot=on keeps its temporary overlay in TMPDIR: the scratch folder.
        var env = ProcessInfo.processInfo.environment
        env["TMPDIR"] = (work as NSString).deletingLastPathComponent
        var r = execute(w, id: id, argv: argv, environment: env, client: ("127.0.0.1", port), side: "in the VM")
        r.accelerator = accelerator
        r.emulated = accelerator == "tcg"
        r.limits = "\(options.cpus) vCPU\(options.cpus == 1 ? "" : "s") (-smp, QEMU pinned to CPU \(cpuList)), \(options.memoryBytes >> 20) MiB (-m)"
        return r
    }

    /// QEMU booting a snapshot of the flattened disk with the image's kernel, `agent` written to
    /// `disk` (a raw, read-only second drive) as PID 1's script; the run's CPUs and memory.
    func agentVM(_ vm: Handoff.VM, agent: String, disk agentDisk: String, accelerator: String) throws -> QemuInvocation {
        var bytes = Data(agent.utf8)
        bytes.append(Data(repeating: UInt8(ascii: "\n"), count: (512 - bytes.count % 512) % 512))
        try bytes.write(to: URL(fileURLWithPath: agentDisk))
        var qemu = QemuInvocation(kernel: path(vm.boot.kernel), initrd: vm.boot.initrd.map(path),
                                  append: vm.boot.commandLine + " " + RuntimeBench.agentCommandLine, accelerator: accelerator)
        qemu.memoryMiB = Int(options.memoryBytes >> 20)
        qemu.cpus = options.cpus
        qemu.drives = [.init(file: path(vm.disk), format: vm.diskFormat, snapshot: true),
                       .init(file: agentDisk, format: "raw", readOnly: true)]
        return qemu
    }

    /// Appended to the image's kernel command line: quiet console, eth0 keeps its name, and PID 1
    /// is the shell reading the agent disk; when it ends the kernel panics and QEMU exits.
    static let agentCommandLine = "quiet loglevel=1 net.ifnames=0 panic=-1 init=/bin/sh -- /dev/vdb"

    /// The VM's PID 1: mounts what a shell needs, brings the network up for a server (QEMU's
    /// user-mode network: the guest is 10.0.2.15/24), runs the workload script, powers off.
    static func agentScript(id: String, network: Bool, workload: String) -> String {
        var s = """
            # imgbench runtime agent (\(id)): PID 1 of the VM, read from a read-only disk.
            export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
            mount -t proc proc /proc 2>/dev/null
            mount -t sysfs sysfs /sys 2>/dev/null
            mount -t devtmpfs devtmpfs /dev 2>/dev/null
            mount -t tmpfs -o mode=755 tmpfs /run 2>/dev/null
            mount -t tmpfs -o mode=1777 tmpfs /tmp 2>/dev/null
            mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm 2>/dev/null
            echo imgbench > /proc/sys/kernel/hostname

            """
        // The loopback interface always (MPI and servers talk over it); eth0 for a server.
        // iproute2 when the image has it, else Perl (essential in Debian) with the ioctls.
        let eth = network ? "eth0" : ""
        s += #"""
            ETH=\#(eth)
            if command -v ip >/dev/null 2>&1; then
              ip link set lo up && { [ -z "$ETH" ] || { ip addr add 10.0.2.15/24 dev "$ETH" && ip link set "$ETH" up; }; }
            else
              perl -MSocket -e '
                socket(my $s, AF_INET, SOCK_DGRAM, 0) or die "socket: $!\n";
                sub addr { pack("a16 S n a4 x16", $_[0], AF_INET, 0, inet_aton($_[1])) }
                sub up { my $r = pack("a16 x24", $_[0]); ioctl($s, 0x8913, $r) or die "SIOCGIFFLAGS $_[0]: $!\n";
                         my $f = unpack("x16 s", $r); ioctl($s, 0x8914, pack("a16 s x22", $_[0], $f | 0x41)) or die "SIOCSIFFLAGS $_[0]: $!\n" }
                up("lo");
                if (@ARGV) {
                  ioctl($s, 0x8916, addr($ARGV[0], "10.0.2.15")) or die "SIOCSIFADDR $ARGV[0]: $!\n";
                  ioctl($s, 0x891c, addr($ARGV[0], "255.255.255.0")) or die "SIOCSIFNETMASK $ARGV[0]: $!\n";
                  up($ARGV[0]);
                }' $ETH
            fi || echo "imgbench agent: the network did not come up"

            """#
        s += """
            (
            \(workload)
            )
            sync
            echo o > /proc/sysrq-trigger
            sleep 10

            """
        return s
    }

    /// Runs one side's program, following the protocol on its output; for a server workload, runs
    /// the client on the host once the server is ready, then stops the side.
    func execute(_ w: Workload, id: String, argv: [String], environment: [String: String]?,
                 client target: (host: String, ports: ServerPorts), side: String) -> RunReport.SideResult {
        let start = Date()
        let watch = ProtocolWatch(id: id)
        let stop = StopFlag()
        let done = SideOutcome()
        let timeout = options.timeout
        Thread {
            do {
                let r = try Command.run(argv, environment: environment, timeout: timeout, outputLimit: 4 << 20,
                                        stopWhen: stop, onOutput: { watch.feed($0) })
                done.finish(result: r, error: nil)
            } catch {
                done.finish(result: nil, error: error)
            }
            watch.close()
        }.start()
        var client: ClientRun?
        if w.isServer, w.client != nil {
            client = runClient(w, watch: watch, host: target.host, port: target.ports, deadline: start.addingTimeInterval(timeout))
            stop.set()
        }
        let (result, runError) = done.wait()
        let side = SideRun(workload: w, side: side, seconds: Date().timeIntervalSince(start), result: result,
                           timedOut: (result?.timedOut ?? false) && !stop.isSet, timeout: timeout)
        if let tool = watch.missingTool {
            var r = side.failed(.missingTool, "\(w.name): \(tool) is not in the image (\(side.side)): install it in the recipe and declare the workload (# workloads=\(w.name))")
            r.missingTool = tool
            return r
        }
        if let e = runError { return side.failed(.failed, "\(w.name) \(side.side): \(e)") }
        return w.isServer ? side.judgeServer(watch: watch, client: client) : side.judge(watch: watch)
    }

    /// What a server workload's client did on the host.
    struct ClientRun {
        var output: String?
        var error: String?
    }

    /// Runs a server workload's client against the side once the side says it is ready.
    func runClient(_ w: Workload, watch: ProtocolWatch, host: String, port: ServerPorts, deadline: Date) -> ClientRun {
        guard let client = w.client, watch.waitForReady(until: deadline) else { return ClientRun() }
        let remaining = max(5, deadline.timeIntervalSinceNow)
        do {
            let c = try Command.run(client(parameters, host, port), timeout: remaining)
            if c.timedOut { return ClientRun(output: c.output, error: "the client did not finish within \(Int(remaining)) s") }
            if c.status != 0 { return ClientRun(output: c.output, error: "the client exited \(c.status): \(Command.tail(c.output, lines: 10))") }
            return ClientRun(output: c.output)
        } catch {
            return ClientRun(error: "the client cannot start: \(error)")
        }
    }

    /// One side's run, judged: the figures, or why there are none.
    struct SideRun {
        var workload: Workload
        var side: String
        var seconds: Double
        var result: Command.Result?
        var timedOut: Bool
        var timeout: Double

        var output: String { result?.output ?? "" }
        var noAnswer: String { "\(workload.name) \(side): no answer within \(Int(timeout)) s: stopped" }

        func failed(_ status: RunReport.Status, _ error: String, tail: String? = nil) -> RunReport.SideResult {
            var r = RunReport.SideResult(status: status, seconds: seconds, figures: [], limits: "")
            r.error = error
            r.outputTail = tail.map { Command.tail($0, lines: 20) }
            return r
        }

        /// The figures from `text`, or the parser's complaint with the tail of `shown`.
        func parsed(_ text: String, shown: String) -> RunReport.SideResult {
            do {
                return RunReport.SideResult(status: .ok, seconds: seconds, figures: try workload.parse(text), limits: "")
            } catch {
                return failed(.failed, "\(workload.name) \(side): \(error)", tail: shown)
            }
        }

        func judgeServer(watch: ProtocolWatch, client: ClientRun?) -> RunReport.SideResult {
            guard watch.ready else {
                return failed(timedOut ? .timedOut : .failed, timedOut ? noAnswer : "\(workload.name) \(side): the server did not start", tail: output)
            }
            guard client?.error == nil, let out = client?.output else {
                return failed(.failed, "\(workload.name) \(side): \(client?.error ?? "no client output")", tail: client?.output ?? output)
            }
            return parsed(out, shown: out)
        }

        func judge(watch: ProtocolWatch) -> RunReport.SideResult {
            guard let status = watch.endStatus else {
                return failed(timedOut ? .timedOut : .failed,
                              timedOut ? noAnswer : "\(workload.name) \(side): ended (exit \(result?.status ?? -1)) without the end of the workload's output",
                              tail: output)
            }
            let body = watch.body
            guard status == 0 else { return failed(.failed, "\(workload.name) \(side): the workload exited \(status)", tail: body) }
            return parsed(body, shown: body.isEmpty ? output : body)
        }
    }

    // MARK: - Helpers

    static func newID() -> String { String(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)) }

    /// A server workload's ports: one for the server, and a second, different one for its data
    /// connection when it has one (0 for a workload that is no server).
    static func ports(for w: Workload) throws -> ServerPorts {
        guard w.isServer else { return ServerPorts(control: 0) }
        let control = try TCPPort.free()
        guard w.dataPort != nil else { return ServerPorts(control: control) }
        var data = try TCPPort.free()
        while data == control { data = try TCPPort.free() }
        return ServerPorts(control: control, data: data)
    }

    static func host() -> RunReport.Host {
        let p = Provenance.current()
        return RunReport.Host(cpus: p.cpus, cpuModel: p.cpuModel, kernel: p.kernel)
    }
}

/// Follows the protocol lines of a side's output (which may arrive split across reads):
/// `IMGBENCH-BEGIN id`, `IMGBENCH-READY id`, `IMGBENCH-END id STATUS`, `IMGBENCH-MISSING id TOOL`.
final class ProtocolWatch: @unchecked Sendable {
    let id: String
    private let cond = NSCondition()
    private var text = ""
    private var closed = false
    private(set) var ready = false

    init(id: String) { self.id = id }

    func feed(_ chunk: String) {
        cond.lock()
        text += chunk.replacingOccurrences(of: "\r", with: "")
        if !ready && text.contains(Workload.Marker.ready(id) + "\n") { ready = true }
        if text.utf8.count > 8 << 20 { text = String(text.suffix(4 << 20)) }
        cond.broadcast()
        cond.unlock()
    }

    func close() {
        cond.lock()
        closed = true
        cond.broadcast()
        cond.unlock()
    }

    /// Waits until the server says it is ready, the side ends, or the deadline passes.
    func waitForReady(until deadline: Date) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        while !ready && !closed && cond.wait(until: deadline) {}
        return ready
    }

    /// Waits until a whole line holds `marker` (what follows it returned), the side ends, or the
    /// deadline passes.
    func wait(for marker: String, until deadline: Date) -> String? {
        cond.lock()
        defer { cond.unlock() }
        while true {
            if let v = line(after: marker) { return v }
            if closed || !cond.wait(until: deadline) { return line(after: marker) }
        }
    }

    /// Everything the side printed so far (its last 4 MiB at least).
    var output: String { cond.withLock { text } }

    /// What follows `marker` on the first line holding it (a console may put escape sequences
    /// before it on the same line).
    private func after(_ marker: String) -> String? {
        cond.lock()
        defer { cond.unlock() }
        return line(after: marker)
    }

    /// `after` with the lock held; only whole lines count.
    private func line(after marker: String) -> String? {
        let whole = text[..<(text.lastIndex(of: "\n") ?? text.startIndex)]
        guard let line = whole.split(separator: "\n").first(where: { $0.contains(marker) }),
              let r = line.range(of: marker) else { return nil }
        return line[r.upperBound...].trimmingCharacters(in: .whitespaces)
    }

    var missingTool: String? { after(Workload.Marker.missing(id)) }

    var endStatus: Int32? { after(Workload.Marker.end(id)).flatMap { Int32($0) } }

    /// The workload's output: between the begin and end lines.
    var body: String {
        cond.lock()
        defer { cond.unlock() }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let b = lines.firstIndex(where: { $0.hasSuffix(Workload.Marker.begin(id)) }) else { return "" }
        let e = lines[b...].firstIndex { $0.contains(Workload.Marker.end(id)) } ?? lines.endIndex
        return lines[(b + 1)..<e].joined(separator: "\n")
    }
}

/// A side's program's result, handed from its thread.
final class SideOutcome: @unchecked Sendable {
    private let cond = NSCondition()
    private var finished = false
    private var result: Command.Result?
    private var error: Error?

    func finish(result: Command.Result?, error: Error?) {
        cond.lock()
        self.result = result
        self.error = error
        finished = true
        cond.broadcast()
        cond.unlock()
    }

    func wait() -> (Command.Result?, Error?) {
        cond.lock()
        defer { cond.unlock() }
        while !finished { cond.wait() }
        return (result, error)
    }
}
