import Crypto
import Foundation
import Host
import QcowIO
import RecipePlan

/// The VM side of a build: a qcow2 chain in the cache, one overlay per step that changes files,
/// each backed by the one before, written through QEMU's qcow2 driver while mounted
/// (`MountedDisk`); then a finalisation overlay that makes the disk bootable.
///
/// Cache layout: `CACHE/vm/SETTINGS/KEY.qcow2` whose backing file is `PARENTKEY.qcow2` in the same
/// folder (stored relative, so the folder can move), `KEY.boot/` with the kernel and initramfs of
/// a finalised chain, and `KEY.json`, the digests of both, written last. An overlay is made as
/// `KEY.qcow2.partial` under the exclusive lock `KEY.lock` and renamed only when its step
/// succeeded, so the cache holds complete links only and survives failures; a link is used only
/// when its digest matches its record (`BuildCache`).
public final class VMPass {
    /// How a step reaches the disk (`BuildOptions.vmBackend`).
    public enum Backend: String, CaseIterable, Sendable {
        /// qemu-storage-daemon's FUSE export, a loop device and a mount (root; fast).
        case loop
        /// libguestfs's appliance (no root, no mounts on this host; slower).
        case guestfs
    }

    let settings: VMSettings
    let backend: Backend
    let cache: BuildCache
    let folder: String
    let scratch: String
    /// Held for the pass's life: a scratch folder whose lock is free is a dead build's.
    private var scratchLock: FileLock?
    let noCache: Bool
    let events: BuildEvents
    /// The newest link of the chain.
    var top: String?
    var chain: [String] = []
    /// Removes the scratch folder on Ctrl-C; registered first, so it runs after the unmounts.
    private var scratchCleanup: Int?
    /// The registry that links come from and go to (`--cache-from`, `--cache-to`).
    var remote: RemoteCache?
    /// The package cache the finalisation's apt goes through, as the steps' does.
    var packages: PackageCache?
    /// While a whole-disk step runs: the loop device of the disk (`MountedDisk.Target.wholeDisk`).
    var device: String?
    /// What the finalisation of a firmware disk measured, kept in its link's record.
    var finalisationRecord: BuildReport.Finalisation?

    init(settings: VMSettings, backend: Backend, cache: BuildCache, noCache: Bool, events: BuildEvents) throws {
        // Refused before any step runs rather than at the finalisation.
        if settings.boot == .firmware && backend == .guestfs {
            throw BuildError.invalid("vm-boot=firmware: the finalisation installs GRUB through a loop device; use --vm-backend loop (as root) or # vm-boot=kernel")
        }
        self.settings = settings
        self.backend = backend
        self.cache = cache
        folder = VMPass.folder(cache: cache.root, settings: settings)
        scratch = "\(cache.root)/tmp/vm-\(getpid())"
        self.noCache = noCache
        self.events = events
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for dead in ScratchFolders.sweep("\(cache.root)/tmp") { events.note("vm: released and removed \(dead), left by a build that was killed") }
        scratchLock = try FileLock(scratch + ".lock", mode: .exclusive)
        let dir = scratch
        scratchCleanup = Cleanup.register("remove \(dir)") { try? FileManager.default.removeItem(atPath: dir) }
    }

    func path(_ key: String) -> String { "\(folder)/\(key).qcow2" }

    /// The cache folder of the chains of one disk layout (size, filesystem, boot, clusters, kernel).
    static func folder(cache: String, settings: VMSettings) -> String {
        let tag = "\(settings.size)-\(settings.filesystem)-\(settings.boot.rawValue)-\(settings.clusterSize)-\(settings.kernel.rawValue)"
        return "\(cache)/vm/\(BuildPlan.digest([tag]).prefix(16))"
    }

    /// The base disk from the base root; `root` is asked for only when the disk is made here.
    /// `rootSeconds`, the time spent making the base before, counts in the base's time.
    func base(key: String, root: () throws -> String, sourceDateEpoch: Int?, rootSeconds: Double) throws -> BuildReport.Measure {
        let start = Date()
        let p = path(key)
        var fetched = false
        var made: Double?
        let hit = try cache.entry("the VM base disk", lock: lockPath(key), noCache: noCache, check: { checkLink(key, parent: nil) }) {
            fetched = try fetchLink(key, parent: nil)
            if fetched { return }
            events.note("vm: making the base disk (\(ByteCount.format(settings.size)) \(settings.filesystem)) from the base root")
            made = try making(key, parent: nil, started: start, before: rootSeconds) { partial in
                try BuildCache.makingPartial(partial + ".raw") {
                    _ = try BaseDisk.make(root: try root(), qcow2: partial, settings: settings, sourceDateEpoch: sourceDateEpoch, seed: key)
                }
            }
        }
        try storeLink(key)
        top = p
        chain = [p]
        return try measure(p, key: key, seconds: made ?? rootSeconds + Date().timeIntervalSince(start), hit: hit || fetched)
    }

    /// Runs `work` on a new overlay of the current top, reached through the backend; the overlay
    /// becomes the link `key`.
    func step(key: String, label: String, wholeDisk: Bool = false, _ work: (_ disk: Workspace) throws -> Void) throws -> BuildReport.Measure {
        guard let parent = top else { throw BuildError.invalid("vm: no base disk") }
        let start = Date()
        let p = path(key)
        var fetched = false
        var made: Double?
        let hit = try cache.entry("the VM link of \(label)", lock: lockPath(key), noCache: noCache, check: { checkLink(key, parent: parent) }) {
            fetched = try fetchLink(key, parent: parent)
            if fetched { return }
            made = try making(key, parent: parent, started: start) { partial in
                try QcowImage.create(path: partial, options: Qcow2CreateOptions(
                    virtualSize: 0, clusterSize: settings.clusterSize,
                    backingFile: (parent as NSString).lastPathComponent, backingFormat: "qcow2")).close()
                try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
                try run(on: partial, key: key, wholeDisk: wholeDisk, work)
                try VMPass.checkWritten(partial)
            }
        }
        try storeLink(key)
        top = p
        chain.append(p)
        return try measure(p, key: key, seconds: made ?? Date().timeIntervalSince(start), hit: hit || fetched)
    }

    /// The root partition of a `vm-boot=firmware` disk (its place does not depend on the seed,
    /// which only names the GUIDs).
    var rootPartition: DiskLayout.Partition { DiskLayout.plan(size: settings.size, seed: "").root }

    /// `work` on the overlay `partial`, through the backend; everything it mounted or started is
    /// released when it ends. A step of a `vm-boot=firmware` disk mounts the root partition only;
    /// with `wholeDisk`, the disk is a loop device with its partitions (`device` while `work`
    /// runs), for the bootloader.
    func run(on partial: String, key: String, wholeDisk: Bool = false, _ work: (_ disk: Workspace) throws -> Void) throws {
        switch backend {
        case .loop:
            let mnt = "\(scratch)/mnt-\(key.prefix(12))"
            let target: MountedDisk.Target = wholeDisk ? .wholeDisk(root: 3) : settings.boot == .firmware ? .partition(rootPartition) : .filesystem
            let disk = try MountedDisk(image: partial, mountpoint: mnt, workdir: scratch, filesystem: settings.filesystem,
                                       options: MountedDisk.buildOptions(filesystem: settings.filesystem), target: target)
            device = disk.device
            defer { device = nil }
            do {
                try work(LocalRoot(root: mnt))
                try written(partial) { try FileSystem.syncFilesystem(mnt) }
                disk.release()
            } catch {
                disk.release()
                throw error
            }
            rmdir(mnt)
        case .guestfs:
            guard !wholeDisk else {
                throw BuildError.invalid("vm-boot=firmware: the finalisation installs GRUB through a loop device; use --vm-backend loop (as root) or # vm-boot=kernel")
            }
            let disk = try GuestfsDisk(image: partial, partitioned: settings.boot == .firmware)
            do {
                try work(GuestfsWorkspace(disk: disk, scratch: scratch))
                try disk.close()
            } catch {
                try? disk.close()
                throw error
            }
        }
    }

    /// A file's modification time in nanoseconds (0 when it cannot be read).
    static func modified(_ path: String) -> Int64 {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }

    /// A link made now took the seconds its record keeps (`seconds`); a cached one's record says
    /// what it cost when it was made.
    func measure(_ p: String, key: String, seconds: Double, hit: Bool) throws -> BuildReport.Measure {
        let img = try QcowImage(path: p)
        defer { try? img.close() }
        let map = try AllocationMap.compute(img)
        var m = BuildReport.Measure(seconds: seconds, cacheHit: hit)
        m.builtSeconds = hit ? builtSeconds(key) : seconds
        m.qcow2AllocatedBytes = map.chain[0].allocatedBytes
        m.qcow2DiskBytes = map.chain[0].diskBytes
        return m
    }

    /// The finalisation: a kernel and initramfs (installed with apt when the image has none),
    /// /etc/fstab for a root on /dev/vda, and the boot files copied out beside the chain. Through
    /// a loop mount, the blocks the install freed are then discarded (`trim`); `measure wasted`
    /// counts the clusters this hides in earlier links as freed by the link that wrote them.
    func finalise(key: String, environment: [KeyValue], onOutput: @escaping @Sendable (String) -> Void) throws -> BuildReport.Measure {
        let bootDir = "\(folder)/\(key).boot"
        let fm = FileManager.default
        finalisationRecord = nil
        defer { finalisationRecord = nil }
        var m = try step(key: key, label: "finalise") { disk in
            let hasKernel = !VMPass.kernels(in: try disk.list("/boot")).isEmpty
            let root = (disk as? LocalRoot)?.root
            var record = BuildReport.Finalisation()
            let start = Date(), before = try root.map { try Mounts.usedBytes($0) }
            if settings.kernel == .image && !hasKernel {
                guard try disk.list("/usr/bin").contains("apt-get") else {
                    throw BuildError.invalid("vm: the image has no kernel in /boot and no apt-get to install one; add a `RUN --target=vm` step that installs a kernel and an initramfs, or use `# vm-kernel=host`")
                }
                events.note("vm: installing linux-image-amd64 to make the disk bootable")
                var (mounts, env) = (StepMounts(), environment)
                packages?.add(.vm, disk: disk, network: .host, mounts: &mounts, environment: &env)
                let r = try disk.run(["/bin/sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-image-amd64 initramfs-tools && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"],
                                     environment: env, workdir: "/", user: nil, network: .host, mounts: mounts, onOutput: onOutput)
                guard r.status == 0 else {
                    throw HostError.commandFailed(what: "vm finalisation: installing a kernel", argv: ["apt-get", "install", "linux-image-amd64"],
                                                   status: r.status, outputTail: Command.tail(r.output, lines: 20))
                }
            }
            try disk.writeFile("/etc/fstab", "# written by imgbench: the disk is one \(settings.filesystem) filesystem on the whole virtio disk\n/dev/vda / \(settings.filesystem) defaults,errors=remount-ro 0 1\n")
            // Through a loop mount, the blocks the kernel's install freed are discarded (the
            // guestfs backend keeps them).
            if let root, let before {
                try FileSystem.syncFilesystem(root)
                record.parts.append(.init(name: "kernel", seconds: Date().timeIntervalSince(start),
                                          filesystemBytes: Int64(try Mounts.usedBytes(root)) - Int64(before)))
                try trim(root, partial: path(key) + ".partial", into: &record)
                finalisationRecord = record
            }
            try BuildCache.makingPartial(bootDir + ".partial") {
                try fm.createDirectory(atPath: bootDir + ".partial", withIntermediateDirectories: true)
                try copyBootFiles(from: disk, into: bootDir + ".partial")
                try? fm.removeItem(atPath: bootDir)
                try FileSystem.rename(bootDir + ".partial", to: bootDir)
            }
        }
        guard fm.fileExists(atPath: "\(bootDir)/vmlinuz") else {
            throw BuildError.invalid("vm: the cached finalisation \(key.prefix(12)) lacks its boot files; rebuild with --no-cache")
        }
        m.finalisation = finalisation(key)
        return m
    }

    /// The kernel and initramfs the disk boots with: the host's (`vm-kernel=host`) or the disk's.
    func copyBootFiles(from disk: Workspace, into dir: String) throws {
        let fm = FileManager.default
        if settings.kernel == .host {
            let names = (try? fm.contentsOfDirectory(atPath: "/boot")) ?? []
            guard let (kernel, initrd) = VMPass.kernels(in: names).last else {
                throw BuildError.invalid("vm-kernel=host: the build host has no kernel in /boot (scripts/install-deps.sh installs linux-image-amd64)")
            }
            try fm.copyItem(atPath: "/boot/\(kernel)", toPath: "\(dir)/vmlinuz")
            if let i = initrd { try fm.copyItem(atPath: "/boot/\(i)", toPath: "\(dir)/initrd.img") }
        } else {
            guard let (kernel, initrd) = VMPass.kernels(in: try disk.list("/boot")).last else {
                throw BuildError.invalid("vm: no kernel in /boot after finalisation")
            }
            try disk.fetch("/boot/\(kernel)", to: "\(dir)/vmlinuz")
            if let i = initrd { try disk.fetch("/boot/\(i)", to: "\(dir)/initrd.img") }
        }
    }

    var bootFolder: String? {
        guard let t = top else { return nil }
        let dir = (t as NSString).deletingPathExtension + ".boot"
        return FileManager.default.fileExists(atPath: dir) ? dir : nil
    }

    /// Kernel and initramfs pairs among the names of a /boot folder, sorted by version.
    static func kernels(in names: [String]) -> [(String, String?)] {
        return names.filter { $0.hasPrefix("vmlinuz-") }.sorted { $0.compare($1, options: .numeric) == .orderedAscending }.map { k in
            let version = k.dropFirst("vmlinuz-".count)
            let i = "initrd.img-\(version)"
            return (k, names.contains(i) ? i : nil)
        }
    }

    /// Puts the chain (hard links to the cache, named as their backing references expect), the
    /// flattened disk and the boot files into `out`.
    /// The chain link the flattened disk is made from.
    var chainTip: String { chain.last! }

    /// Writes the chain (hard links into the cache) and the flattened disk into `out`; with
    /// `reusing`, that flattened disk (the previous build's, known to be the same) is moved in
    /// instead of being written again.
    func export(to out: String, reusing previous: String? = nil) throws -> (chain: [String], disk: String, flattened: AllocationMap) {
        let fm = FileManager.default
        let chainDir = "\(out)/vm/chain"
        try fm.createDirectory(atPath: chainDir, withIntermediateDirectories: true)
        var names: [String] = []
        for file in chain {
            let name = (file as NSString).lastPathComponent
            let dst = "\(chainDir)/\(name)"
            if link(file, dst) != 0 { try fm.copyItem(atPath: file, toPath: dst) }
            names.append("vm/chain/\(name)")
        }
        let disk = "\(out)/vm/disk.qcow2"
        if let previous {
            try fm.moveItem(atPath: previous, toPath: disk)
        } else {
            _ = try Qcow2Converter.convert(source: try QcowImage(path: "\(chainDir)/\((chain.last! as NSString).lastPathComponent)"), to: disk,
                                           options: Qcow2ConvertOptions(clusterSize: settings.clusterSize))
        }
        if let boot = bootFolder {
            try fm.createDirectory(atPath: "\(out)/vm/boot", withIntermediateDirectories: true)
            for f in try fm.contentsOfDirectory(atPath: boot) { try fm.copyItem(atPath: "\(boot)/\(f)", toPath: "\(out)/vm/boot/\(f)") }
        }
        let flat = try QcowImage(path: disk)
        defer { try? flat.close() }
        return (names, "vm/disk.qcow2", try AllocationMap.compute(flat))
    }

    /// Removes the scratch folder, releasing first whatever is still up in it (a FUSE export
    /// whose daemon died on a full disk stays mounted, disconnected, until it is unmounted).
    func cleanScratch() {
        if let t = scratchCleanup { Cleanup.unregister(t) }
        ScratchFolders.release(scratch)
        try? FileManager.default.removeItem(atPath: scratch)
        unlink(scratch + ".lock")
        scratchLock = nil
    }
}
