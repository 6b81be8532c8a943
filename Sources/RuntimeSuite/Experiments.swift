import Foundation
import Host
import ImageBuild

/// Sharma et al.'s (Middleware 2016) experiments beside the workloads: what an instance costs
/// before it does any work. Each side starts idle instances: a shell (in the image for the
/// container and the VM, on the host natively) that says it is ready and sleeps.
///
/// - `startup`: from a built image to a ready instance. The container: `runc create` (the
///   namespaces, the root, the process waiting) and `runc start` until the shell's first line;
///   the VM: QEMU's start (direct kernel boot, as every workload) until the agent's first line;
///   natively: the process start of the same shell, the floor both build on.
/// - `footprint`: the memory one idle instance costs the host: the PSS and RSS of its processes
///   (the container's process tree; QEMU's process; the shell natively), and for the VM the
///   guest's own view (MemTotal - MemAvailable).
/// - `density`: how many idle instances fit in `--density-memory` before the start-up of one
///   more (the probe) is `--density-drop` slower than the first's, at most `--density-max`.
public struct Experiment: Sendable {
    public var name: String
    public var summary: String
    public var figures: [FigureSpec]
    public var notes: [String]

    public static let startup = Experiment(
        name: "startup", summary: "start-up time: from the built image to an idle instance's first line (Sharma et al., Middleware 2016)",
        figures: [FigureSpec(name: "ready", unit: "s", higherIsBetter: false), FigureSpec(name: "create", unit: "s", higherIsBetter: false),
                  FigureSpec(name: "start", unit: "s", higherIsBetter: false),
                  FigureSpec(name: "firmware boot: login", unit: "s", higherIsBetter: false),
                  FigureSpec(name: "firmware boot: service", unit: "s", higherIsBetter: false)],
        notes: ["ready: natively the start of a shell on the host (there is no image to start: the floor of the other two), in the container runc create plus runc start until the shell's first line, in the VM QEMU's start (direct kernel boot of the image's kernel) until the agent's first line; create and start are the container's two parts; a disk that boots on its own (# vm-boot=firmware) is also booted as imgbench boot --firmware bios does (SeaBIOS, GRUB, systemd, not pinned): QEMU's start to the login prompt and to the EXPOSEd TCP ports answering"])
    public static let footprint = Experiment(
        name: "footprint", summary: "idle footprint: the host memory one idle instance costs (Sharma et al., Middleware 2016)",
        figures: [FigureSpec(name: "PSS", unit: "MiB", higherIsBetter: false), FigureSpec(name: "RSS", unit: "MiB", higherIsBetter: false),
                  FigureSpec(name: "guest used", unit: "MiB", higherIsBetter: false)],
        notes: ["PSS and RSS summed over the instance's host processes from /proc/PID/smaps_rollup, 2 s after it is ready: the shell natively, the container's process tree (runc has exited: nothing else stays), the QEMU process for the VM; guest used is the VM's own MemTotal - MemAvailable"])
    public static let density = Experiment(
        name: "density", summary: "density: idle instances that fit in the given host memory before one more starts markedly slower (Sharma et al., Middleware 2016)",
        figures: [FigureSpec(name: "instances", unit: "instances"), FigureSpec(name: "PSS per instance", unit: "MiB", higherIsBetter: false),
                  FigureSpec(name: "probe start-up", unit: "s", higherIsBetter: false)],
        notes: ["instances are started one by one and left idle; each one's start-up is the probe figure; the count stops at the last instance whose start-up was within the drop of the first's and whose PSS, with the others', fits the memory budget, or at the cap; natively there is no instance to count; one round whatever --repeat says"])

    public static let all = [startup, footprint, density]

    public static func named(_ name: String) -> Experiment? { all.first { $0.name == name } }
}

/// One idle instance, running until `stop()`.
final class IdleInstance: @unchecked Sendable {
    /// Seconds of `runc create` (the container only).
    var createSeconds: Double?
    /// Seconds from the start (`runc start` for the container) to the first line.
    var startSeconds = 0.0
    var readySeconds: Double { (createSeconds ?? 0) + startSeconds }
    /// The host process whose tree is the instance.
    var pid: Int32 = 0
    /// The VM's own view of its used memory.
    var guestUsedBytes: UInt64?
    private let stopAction: () -> Void
    private var stopped = false

    init(stop: @escaping () -> Void) { stopAction = stop }

    func stop() {
        guard !stopped else { return }
        stopped = true
        stopAction()
    }
}

/// Why an instance did not become ready: the result's status and error, with its output's tail.
struct InstanceError: Error, CustomStringConvertible {
    var status: RunReport.Status
    var message: String
    var output: String
    var description: String { message }
}

extension RuntimeBench {
    /// One round of `e` on `side`.
    func measure(_ e: Experiment, side: Side, work: String, accelerator: String?) -> RunReport.SideResult {
        let start = Date()
        var r: RunReport.SideResult
        do {
            switch e.name {
            case Experiment.startup.name:
                let i = try startIdle(side, work: work, accelerator: accelerator)
                i.stop()
                var figures: [(String, String, Double?)] = [("ready", "s", i.readySeconds), ("create", "s", i.createSeconds),
                                                            ("start", "s", side == .container ? i.startSeconds : nil)]
                if side == .vm, let boot = try firmwareStartup(accelerator: accelerator) {
                    figures += [("firmware boot: login", "s", boot.secondsToLogin),
                                ("firmware boot: service", "s", boot.ports.isEmpty ? nil : boot.ports.compactMap(\.seconds).max())]
                }
                r = result(start, figures)
            case Experiment.footprint.name:
                let i = try startIdle(side, work: work, accelerator: accelerator)
                defer { i.stop() }
                Thread.sleep(forTimeInterval: 2)
                guard let m = Footprint.ofTree(i.pid) else { throw InstanceError(status: .failed, message: "the instance (pid \(i.pid)) ended before it was measured", output: "") }
                r = result(start, [("PSS", "MiB", mib(m.pssBytes)), ("RSS", "MiB", mib(m.rssBytes)), ("guest used", "MiB", i.guestUsedBytes.map(mib))])
            default:
                let (figures, why) = try density(side, work: work, accelerator: accelerator)
                r = result(start, figures)
                r.limits = why
            }
        } catch let e as InstanceError {
            r = RunReport.SideResult(status: e.status, seconds: Date().timeIntervalSince(start), figures: [], limits: "")
            r.error = "\(e.message)"
            r.outputTail = e.output.isEmpty ? nil : Command.tail(e.output, lines: 20)
        } catch {
            r = RunReport.SideResult(status: .failed, seconds: Date().timeIntervalSince(start), figures: [], limits: "")
            r.error = "\(error)"
        }
        let limits = sideLimits(side)
        r.limits = r.limits.isEmpty ? limits : "\(limits); \(r.limits)"
        if side == .vm {
            r.accelerator = accelerator
            r.emulated = accelerator == "tcg"
        }
        return r
    }

    /// A disk that boots on its own (`# vm-boot=firmware`) booted as `imgbench boot --firmware
    /// bios` does: QEMU's start to the login prompt and to the EXPOSEd TCP ports answering. Nil
    /// for a disk QEMU boots with the image's kernel.
    func firmwareStartup(accelerator: String?) throws -> FirmwareBoot.Result? {
        guard let vm = handoff.vm, let report = try? BuildReport.load(path(handoff.report)), report.outputs.vmBoot == "firmware" else { return nil }
        progress("startup: vm, booted by its firmware (SeaBIOS)")
        var boot = FirmwareBoot(disk: path(vm.disk), kind: .bios)
        boot.format = vm.diskFormat
        boot.timeout = options.timeout
        boot.memoryMiB = Int(options.memoryBytes >> 20)
        boot.cpus = options.cpus
        boot.accelerator = accelerator == "kvm" ? .kvm : .tcg
        boot.ports = FirmwareBoot.tcpPorts(exposed: report.outputs.exposedPorts ?? [])
        let r = try boot.run()
        guard r.succeeded else {
            throw InstanceError(status: r.reachedLogin ? .failed : .timedOut,
                                message: r.reachedLogin ? "the VM booted by its firmware: its ports \(r.ports.filter { !$0.answered }.map(\.guest)) did not answer"
                                    : "the VM booted by its firmware: no login prompt within \(Int(options.timeout)) s: stopped",
                                output: r.consoleTail)
        }
        return r
    }

    func mib(_ bytes: UInt64) -> Double { Double(bytes) / Double(1 << 20) }

    func result(_ start: Date, _ figures: [(String, String, Double?)]) -> RunReport.SideResult {
        RunReport.SideResult(status: .ok, seconds: Date().timeIntervalSince(start),
                             figures: figures.compactMap { n, u, v in v.map { Figure(name: n, unit: u, value: $0) } }, limits: "")
    }

    func sideLimits(_ side: Side) -> String {
        switch side {
        case .native: return "pinned to CPU \(cpuList) (taskset)"
        case .container: return "pinned to CPU \(cpuList) (taskset on runc); the image's rootfs read-only; the host's network"
        case .vm: return "\(options.cpus) vCPU\(options.cpus == 1 ? "" : "s") (-smp, QEMU pinned to CPU \(cpuList)), \(options.memoryBytes >> 20) MiB (-m)"
        }
    }

    /// Idle instances started one by one until the budget, the drop or the cap; all stopped
    /// before it returns.
    func density(_ side: Side, work: String, accelerator: String?) throws -> ([(String, String, Double?)], String) {
        guard side != .native else { throw InstanceError(status: .failed, message: "density: natively there is no instance to count", output: "") }
        var instances: [IdleInstance] = []
        defer { for i in instances { i.stop() } }
        var first: Double?
        var fitted = 0
        var pss: UInt64 = 0
        var lastProbe = 0.0
        var why = ""
        let budget = options.densityMemoryBytes
        while true {
            let n = instances.count + 1
            progress("density: \(side.rawValue) instance \(n)")
            let folder = "\(work)/\(n)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let i = try startIdle(side, work: folder, accelerator: accelerator)
            instances.append(i)
            lastProbe = i.readySeconds
            let base = first ?? i.readySeconds
            first = base
            if i.readySeconds > base / (1 - options.densityDrop) {
                why = String(format: "stopped at instance %d: its start-up %.2f s is more than %.0f%% slower than the first's %.2f s", n, i.readySeconds, options.densityDrop * 100, base)
                break
            }
            Thread.sleep(forTimeInterval: 1)
            let total = instances.compactMap { Footprint.ofTree($0.pid)?.pssBytes }.reduce(0, +)
            if total > budget {
                why = "stopped at instance \(n): the instances' PSS \(ByteCount.format(total)) is over the budget of \(ByteCount.format(budget))"
                break
            }
            fitted = n
            pss = total
            if total + total / UInt64(n) > budget {
                why = "stopped at \(n): one more instance (\(ByteCount.format(total / UInt64(n))) each) would pass the budget of \(ByteCount.format(budget))"
                break
            }
            if n >= options.densityMax {
                why = "stopped at the cap of \(options.densityMax) instances (--density-max)"
                break
            }
        }
        let per = fitted > 0 ? mib(pss / UInt64(fitted)) : nil
        return ([("instances", "instances", Double(fitted)), ("PSS per instance", "MiB", per), ("probe start-up", "s", lastProbe)], why)
    }

    /// The shell of an idle instance: the VM's prints its guest's used memory (KiB) after its
    /// first line; then it sleeps until stopped.
    static func idleScript(id: String, guestMemory: Bool) -> String {
        var s = """
            export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
            echo "\(Workload.Marker.ready(id)) $$"

            """
        if guestMemory {
            s += """
                while read -r k v u; do case "$k" in MemTotal:) t=$v;; MemAvailable:) a=$v;; esac; done < /proc/meminfo
                echo "\(Workload.Marker.memory(id)) $((t - a))"

                """
        }
        s += "exec sleep 2147483647\n"
        return s
    }

    /// Starts one idle instance of `side` in the folder `work` and waits until it is ready.
    func startIdle(_ side: Side, work: String, accelerator: String?) throws -> IdleInstance {
        let id = RuntimeBench.newID()
        let deadline = Date().addingTimeInterval(options.timeout)
        switch side {
        case .native:
            return try background(["taskset", "-c", cpuList, "/bin/sh", "-c", RuntimeBench.idleScript(id: id, guestMemory: false)],
                                  environment: nil, id: id, deadline: deadline, what: "the shell natively") { watch in
                watch.wait(for: Workload.Marker.ready(id), until: deadline).flatMap { Int32($0) }
            }
        case .vm:
            guard let vm = handoff.vm else { throw BuildError.invalid("no VM disk") }
            let agentDisk = work + ".agent.img"
            let pidFile = work + ".qemu.pid"
            let qemu = try agentVM(vm, agent: RuntimeBench.agentScript(id: id, network: false, workload: RuntimeBench.idleScript(id: id, guestMemory: true)),
                                   disk: agentDisk, accelerator: accelerator ?? "tcg")
            var env = ProcessInfo.processInfo.environment
            env["TMPDIR"] = (work as NSString).deletingLastPathComponent
            return try background(["taskset", "-c", cpuList] + qemu.argv + ["-pidfile", pidFile], environment: env, id: id, deadline: deadline,
                                  what: "the VM", guestMemory: true, removing: [agentDisk, pidFile]) { watch in
                guard watch.wait(for: Workload.Marker.ready(id), until: deadline) != nil else { return nil }
                return (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
        case .container:
            return try startIdleContainer(work: work, id: id, deadline: deadline)
        }
    }

    /// A program in the background (natively, QEMU) followed by a `ProtocolWatch`; ready when
    /// `ready` gives the instance's PID. Stopped (SIGTERM, then SIGKILL) by `stop()` and on Ctrl-C.
    private func background(_ argv: [String], environment: [String: String]?, id: String, deadline: Date, what: String,
                            guestMemory: Bool = false, removing files: [String] = [], ready: (ProtocolWatch) -> Int32?) throws -> IdleInstance {
        let watch = ProtocolWatch(id: id)
        let stop = StopFlag()
        let done = SideOutcome()
        let start = Date()
        Thread {
            do {
                done.finish(result: try Command.run(argv, environment: environment, outputLimit: 1 << 20, stopWhen: stop, onOutput: { watch.feed($0) }), error: nil)
            } catch {
                done.finish(result: nil, error: error)
            }
            watch.close()
        }.start()
        let instance = IdleInstance {
            stop.set()
            _ = done.wait()
            for f in files { try? FileManager.default.removeItem(atPath: f) }
        }
        guard let pid = ready(watch) else {
            let ended = Date() < deadline
            instance.stop()
            let (result, error) = done.wait()
            let how = error.map { ": \($0)" } ?? result.map { " (exit \($0.status))" } ?? ""
            throw InstanceError(status: ended ? .failed : .timedOut,
                                message: ended ? "\(what) ended before its first line\(how)" : "\(what): no first line within \(Int(options.timeout)) s: stopped",
                                output: watch.output)
        }
        instance.startSeconds = Date().timeIntervalSince(start)
        instance.pid = pid
        // The guest's view follows its first line at once.
        if guestMemory, let kib = watch.wait(for: Workload.Marker.memory(id), until: Date().addingTimeInterval(30)).flatMap({ UInt64($0) }) {
            instance.guestUsedBytes = kib * 1024
        }
        return instance
    }

    /// `runc create` (timed), then `runc start` until the shell's first line in its log; the
    /// container is deleted by `stop()` and on Ctrl-C.
    private func startIdleContainer(work: String, id: String, deadline: Date) throws -> IdleInstance {
        guard let c = handoff.container else { throw BuildError.invalid("no container image") }
        let bundle = path(c.bundle)
        let rootfs = URL(fileURLWithPath: "\(bundle)/rootfs").standardizedFileURL.path
        let runtime = work + ".bundle"
        let log = work + ".log"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let mountPoint = FileManager.default.fileExists(atPath: "\(rootfs)/var/tmp") ? "/var/tmp" : "/tmp"
        try RuntimeBench.writeRuntimeConfig(from: "\(bundle)/config.json", to: "\(runtime)/config.json", rootfs: rootfs,
                                            args: ["/bin/sh", "-c", RuntimeBench.idleScript(id: id, guestMemory: false)], work: work, workMount: mountPoint)
        let name = "imgbench-run-\(id)"
        let delete = Cleanup.register("delete container \(name)") {
            _ = try? Command.run(["runc", "delete", "--force", name], timeout: 30)
            try? FileManager.default.removeItem(atPath: runtime)
            try? FileManager.default.removeItem(atPath: log)
        }
        let instance = IdleInstance { Cleanup.run(delete) }
        func fail(_ status: RunReport.Status, _ message: String, _ output: String) -> InstanceError {
            instance.stop()
            return InstanceError(status: status, message: message, output: output)
        }
        // The container's output goes to a file: runc create leaves its process behind holding it.
        let created = Date()
        let create = try Command.run(["taskset", "-c", cpuList, "runc", "create", "--bundle", runtime, name], timeout: options.timeout, logFile: log)
        instance.createSeconds = Date().timeIntervalSince(created)
        guard create.status == 0 else { throw fail(.failed, "runc create exited \(create.status)", create.output) }
        let started = Date()
        let start = try Command.run(["runc", "start", name], timeout: options.timeout)
        guard start.status == 0 else { throw fail(.failed, "runc start exited \(start.status)", start.output) }
        let marker = Workload.Marker.ready(id)
        while true {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if text.contains(marker + " ") && text.hasSuffix("\n") { break }
            if Date() >= deadline { throw fail(.timedOut, "the container: no first line within \(Int(options.timeout)) s: stopped", text) }
            usleep(2_000)
        }
        instance.startSeconds = Date().timeIntervalSince(started)
        let state = try Command.run(["runc", "state", name], timeout: 30)
        guard state.status == 0, let json = try? JSONSerialization.jsonObject(with: Data(state.output.utf8)) as? [String: Any],
              let pid = (json["pid"] as? Int).map(Int32.init), pid > 0 else {
            throw fail(.failed, "runc state \(name) gives no PID", state.output)
        }
        instance.pid = pid
        return instance
    }
}
