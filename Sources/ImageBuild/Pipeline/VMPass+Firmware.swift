import Foundation
import Host
import OCI
import QcowIO
import RecipePlan

/// The finalisation of a `vm-boot=firmware` disk: it makes the container root a VM that boots on
/// its own. Each part is timed and its bytes measured (`BuildReport.Finalisation`): what making a
/// container root into a VM costs.
///
/// 1. packages: systemd as init and udev (and, with `vm-kernel=image`, Debian's cloud kernel when
///    the image has none), with no recommends, the apt lists and caches removed;
/// 2. kernel: with `vm-kernel=host`, the host's kernel, initramfs and the virtio NIC's modules;
/// 3. files: fstab by UUID, hostname, DHCP on the first NIC (systemd-networkd), the image's
///    command as `imgbench-image.service`, EXPOSE recorded in /etc/imgbench/exposed-ports;
/// 4. enable: the service, networkd and a getty on the serial console (ttyS0);
/// 5. bootloader: GRUB for BIOS (grub-install into the MBR and the BIOS boot partition) and for
///    UEFI (`\EFI\BOOT\BOOTX64.EFI` on the ESP, written with mtools), from the host's GRUB;
/// 6. trim: freed blocks discarded, so the overlay keeps only what the filesystem uses.
extension VMPass {
    func finaliseFirmware(key: String, environment: [KeyValue], config: ContainerConfig, hostname: String, sourceDateEpoch: Int?,
                          onOutput: @escaping @Sendable (String) -> Void) throws -> BuildReport.Measure {
        let bootDir = "\(folder)/\(key).boot"
        let fm = FileManager.default
        finalisationRecord = nil
        defer { finalisationRecord = nil }
        var m = try step(key: key, label: "finalise", wholeDisk: true) { disk in
            guard let root = (disk as? LocalRoot)?.root, let device else {
                throw BuildError.invalid("vm-boot=firmware: the finalisation needs the disk on a loop device (--vm-backend loop)")
            }
            var record = BuildReport.Finalisation()
            func part(_ name: String, _ body: () throws -> Void) throws {
                let start = Date(), before = try Mounts.usedBytes(root)
                try body()
                try FileSystem.syncFilesystem(root)
                record.parts.append(.init(name: name, seconds: Date().timeIntervalSince(start),
                                          filesystemBytes: Int64(try Mounts.usedBytes(root)) - Int64(before)))
            }
            try part("packages") { try installPackages(disk, environment: environment, onOutput: onOutput) }
            var kernel: (String, String?)?
            try part("kernel") { kernel = try installHostKernel(root: root) }
            let rootUUID = try Command.check("reading the root filesystem's UUID", ["blkid", "-s", "UUID", "-o", "value", "\(device)p3"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try part("files") { try writeFiles(disk, root: root, rootUUID: rootUUID, config: config, hostname: hostname) }
            try part("enable") {
                try enableUnits(disk, config: config, onOutput: onOutput)
                try disableDuplicates(root: root, config: config)
            }
            let installed = try VMPass.kernels(in: disk.list("/boot")).last
            guard let (vmlinuz, initrd) = kernel ?? installed else {
                throw BuildError.invalid("vm: no kernel in /boot after finalisation")
            }
            try part("bootloader") {
                try Bootloader.install(device: device, root: root, rootUUID: rootUUID, kernel: "/boot/\(vmlinuz)",
                                       initrd: initrd.map { "/boot/\($0)" }, sourceDateEpoch: sourceDateEpoch, scratch: scratch)
            }
            try trim(root, partial: path(key) + ".partial", into: &record)
            finalisationRecord = record
            try BuildCache.makingPartial(bootDir + ".partial") {
                try fm.createDirectory(atPath: bootDir + ".partial", withIntermediateDirectories: true)
                try fm.copyItem(atPath: "\(root)/boot/\(vmlinuz)", toPath: "\(bootDir).partial/vmlinuz")
                if let initrd { try fm.copyItem(atPath: "\(root)/boot/\(initrd)", toPath: "\(bootDir).partial/initrd.img") }
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

    /// Discards the free blocks of the filesystem mounted on `root` (fstrim, through the loop
    /// device and qemu-storage-daemon's `discard=unmap`): blocks a part wrote and freed (apt's
    /// downloads, its lists) then leave the overlay. Records the overlay's allocated bytes before
    /// and after, and the part.
    func trim(_ root: String, partial: String, into record: inout BuildReport.Finalisation) throws {
        try FileSystem.syncFilesystem(root)
        record.allocatedBeforeTrim = try VMPass.allocated(partial)
        let start = Date()
        try Command.check("discarding the free blocks of the root filesystem", ["fstrim", root])
        try FileSystem.syncFilesystem(root)
        record.parts.append(.init(name: "trim", seconds: Date().timeIntervalSince(start), filesystemBytes: 0))
        record.allocatedAfterTrim = try VMPass.allocated(partial)
    }

    /// The guest bytes a qcow2 file allocates itself (not its backing chain).
    static func allocated(_ qcow2: String) throws -> UInt64 {
        let img = try QcowImage(path: qcow2)
        defer { try? img.close() }
        return try AllocationMap.compute(img).chain[0].allocatedBytes
    }

    /// systemd as init and udev, and a kernel with `vm-kernel=image` when the image has none.
    func installPackages(_ disk: Workspace, environment: [KeyValue], onOutput: @escaping @Sendable (String) -> Void) throws {
        var packages = ["systemd-sysv", "udev"]
        if try settings.kernel == .image && VMPass.kernels(in: disk.list("/boot")).isEmpty {
            // The cloud flavour: virtio, Xen, Hyper-V and VMware drivers, a quarter of linux-image-amd64.
            packages += ["linux-image-cloud-amd64", "initramfs-tools"]
        }
        guard try disk.list("/usr/bin").contains("apt-get") else {
            throw BuildError.invalid("vm-boot=firmware: the image has no apt-get to install \(packages.joined(separator: " ")) with; use # vm-boot=kernel")
        }
        events.note("vm: installing \(packages.joined(separator: " ")) to make the disk boot on its own")
        let script = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \(packages.joined(separator: " ")) && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin"
        var (mounts, env) = (StepMounts(), environment)
        self.packages?.add(.vm, disk: disk, network: .host, mounts: &mounts, environment: &env)
        let r = try disk.run(["/bin/sh", "-c", script], environment: env, workdir: "/", user: nil, network: .host,
                             mounts: mounts, onOutput: onOutput)
        guard r.status == 0 else {
            throw HostError.commandFailed(what: "vm finalisation: installing \(packages.joined(separator: " "))", argv: ["apt-get", "install"] + packages,
                                           status: r.status, outputTail: Command.tail(r.output, lines: 20))
        }
    }

    /// With `vm-kernel=host`: the host's newest kernel and initramfs into /boot, and the modules of
    /// the virtio NIC (Debian builds virtio_net as a module) with their module index. Gives the
    /// names in /boot, or nil with `vm-kernel=image`.
    func installHostKernel(root: String) throws -> (String, String?)? {
        guard settings.kernel == .host else { return nil }
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: "/boot")) ?? []
        guard let (kernel, initrd) = VMPass.kernels(in: names).last else {
            throw BuildError.invalid("vm-kernel=host: the build host has no kernel in /boot (scripts/install-deps.sh installs linux-image-amd64)")
        }
        try fm.createDirectory(atPath: "\(root)/boot", withIntermediateDirectories: true)
        try fm.copyItem(atPath: "/boot/\(kernel)", toPath: "\(root)/boot/\(kernel)")
        if let initrd { try fm.copyItem(atPath: "/boot/\(initrd)", toPath: "\(root)/boot/\(initrd)") }
        let version = String(kernel.dropFirst("vmlinuz-".count))
        let modules = "/lib/modules/\(version)"
        let wanted = ["modules.order", "modules.builtin", "modules.builtin.modinfo",
                      "kernel/drivers/net/virtio_net.ko", "kernel/drivers/net/net_failover.ko", "kernel/net/core/failover.ko"]
        for w in wanted where fm.fileExists(atPath: "\(modules)/\(w)") {
            let dst = "\(root)/lib/modules/\(version)/\(w)"
            try fm.createDirectory(atPath: (dst as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try fm.copyItem(atPath: "\(modules)/\(w)", toPath: dst)
        }
        try Command.check("indexing the VM's kernel modules", ["depmod", "-b", root, version])
        return (kernel, initrd)
    }

    /// fstab, hostname, networking, the image's service and its /run folders, the EXPOSEd ports.
    func writeFiles(_ disk: Workspace, root: String, rootUUID: String, config: ContainerConfig, hostname: String) throws {
        let fm = FileManager.default
        for dir in ["/etc/systemd/network", "/etc/systemd/system", "/etc/imgbench", "/etc/tmpfiles.d",
                    "/etc/systemd/system/systemd-networkd-wait-online.service.d"] {
            try fm.createDirectory(atPath: try RootedPath.resolve(dir, in: root), withIntermediateDirectories: true)
        }
        try disk.writeFile("/etc/fstab", "# written by imgbench: the root partition, by filesystem UUID\nUUID=\(rootUUID) / \(settings.filesystem) defaults,errors=remount-ro 0 1\n")
        try disk.writeFile("/etc/hostname", hostname + "\n")
        try disk.writeFile("/etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\t\(hostname)\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        // Empty: systemd makes a machine id on first boot, so each clone of the disk gets its own
        // and the build stays the same from one run to the next.
        try disk.writeFile("/etc/machine-id", "")
        try disk.writeFile("/etc/systemd/network/20-imgbench.network", "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n")
        // network-online.target waits for DHCP, but not for the two minutes of the default.
        try disk.writeFile("/etc/systemd/system/systemd-networkd-wait-online.service.d/imgbench.conf",
                           "[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=20\n")
        let ports = (config.exposedPorts ?? [:]).keys.sorted()
        try disk.writeFile("/etc/imgbench/exposed-ports", ports.map { $0 + "\n" }.joined())
        let unit = try ImageService.unit(config: config) { program, path in
            for dir in path.split(separator: ":") {
                let candidate = "\(dir)/\(program)"
                if let host = try? RootedPath.resolve(candidate, in: root), fm.isExecutableFile(atPath: host) { return candidate }
            }
            return nil
        }
        if let unit {
            try disk.writeFile("/etc/systemd/system/\(ImageService.name)", unit)
        } else {
            events.note("vm: the image has no CMD or ENTRYPOINT: the VM boots to its login prompt and runs no service of the image's")
        }
        // /run is a tmpfs in the VM: the folders the image has there (mysql's /run/mysqld) are made at boot.
        var lines: [String] = []
        let run = try RootedPath.resolve("/run", in: root)
        if let e = fm.enumerator(atPath: run) {
            while let rel = e.nextObject() as? String {
                var st = stat()
                guard lstat("\(run)/\(rel)", &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { continue }
                lines.append("d /run/\(rel) \(String(st.st_mode & 0o7777, radix: 8)) \(st.st_uid) \(st.st_gid) -")
            }
        }
        try disk.writeFile("/etc/tmpfiles.d/imgbench-image.conf", lines.sorted().map { $0 + "\n" }.joined())
    }

    /// Enables networkd, the serial getty and the image's service (offline: `systemctl enable` in
    /// the root needs no running systemd).
    func enableUnits(_ disk: Workspace, config: ContainerConfig, onOutput: @escaping @Sendable (String) -> Void) throws {
        let hasUnit = !(config.entrypoint ?? []).isEmpty || !(config.cmd ?? []).isEmpty
        let units = ["systemd-networkd.service", "systemd-networkd-wait-online.service", "serial-getty@ttyS0.service"] + (hasUnit ? [ImageService.name] : [])
        let script = "systemctl enable \(units.joined(separator: " ")) && systemctl set-default multi-user.target"
        let r = try disk.run(["/bin/sh", "-c", script], environment: [KeyValue("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")], workdir: "/",
                             user: nil, network: .none, mounts: StepMounts(), onOutput: onOutput)
        guard r.status == 0 else {
            throw HostError.commandFailed(what: "vm finalisation: enabling the VM's units", argv: ["systemctl", "enable"] + units,
                                           status: r.status, outputTail: Command.tail(r.output, lines: 20))
        }
    }

    /// The image's server may also come with its package's own unit, enabled by the package
    /// (mariadb.service runs mariadbd, as the image's CMD does): both would start and fight over
    /// the port. A unit wanted by a target whose `ExecStart=` program has the name of the
    /// command's program is disabled (its wants-link removed), and the build says so.
    func disableDuplicates(root: String, config: ContainerConfig) throws {
        guard let program = ((config.entrypoint ?? []) + (config.cmd ?? [])).first.map({ ($0 as NSString).lastPathComponent }) else { return }
        let fm = FileManager.default
        let system = try RootedPath.resolve("/etc/systemd/system", in: root)
        for wants in ((try? fm.contentsOfDirectory(atPath: system)) ?? []).filter({ $0.hasSuffix(".wants") }).sorted() {
            for unit in ((try? fm.contentsOfDirectory(atPath: "\(system)/\(wants)")) ?? []).sorted() where unit != ImageService.name {
                let link = "\(system)/\(wants)/\(unit)"
                guard let target = try? fm.destinationOfSymbolicLink(atPath: link),
                      let file = try? RootedPath.resolve(target.hasPrefix("/") ? target : "/etc/systemd/system/\(wants)/\(target)", in: root),
                      let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
                if VMPass.startPrograms(unit: text).contains(program) {
                    unlink(link)
                    events.note("vm: disabled \(unit) (\(wants)): it runs \(program), which the image's command, \(ImageService.name), runs already")
                }
            }
        }
    }

    /// The names of the programs a unit's `ExecStart=` lines run, a shell wrapper's included
    /// (mariadb.service's `ExecStart=/bin/sh -c "... exec /usr/sbin/mariadbd ..."`): every word
    /// of the lines, continuations joined, by its last path component.
    static func startPrograms(unit text: String) -> Set<String> {
        let joined = text.replacingOccurrences(of: "\\\n", with: " ")
        var out = Set<String>()
        for line in joined.split(separator: "\n") where line.hasPrefix("ExecStart=") {
            for word in line.dropFirst("ExecStart=".count).split(whereSeparator: { " \t\"';`|&".contains($0) }) {
                out.insert((String(word.drop { "-@:+!".contains($0) }) as NSString).lastPathComponent)
            }
        }
        return out
    }

    /// The VM's hostname from the recipe's name: lowercase letters, digits and dashes, at most 63.
    static func hostname(_ name: String) -> String {
        let cut = String(name.lowercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "-" }.prefix(63))
            .trimmingCharacters(in: CharacterSet(charactersIn: "-"))
        return cut.isEmpty ? "imgbench" : cut
    }
}
