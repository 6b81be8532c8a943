import Foundation
import Testing
import TestSupport

/// `# vm-boot=firmware` end to end: a small recipe whose image runs a web server is built into a
/// GPT disk that boots on its own, then booted with no `-kernel` under SeaBIOS and OVMF (TCG on
/// these hosts) until the login prompt, with its EXPOSEd port answering through a forwarded host
/// port. Part of the serialized `BuildTests` suite (same cache, same base as the small recipes).
extension BuildTests {
    /// The recipe: the host's static busybox serves /srv on 8080 as nobody, so no package beyond
    /// what the finalisation installs is fetched.
    func firmwareRecipe(_ dir: TempDir) throws -> String {
        let recipe = try dir.sub("recipes/fwboot")
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: "\(recipe)/busybox")
        try FileManager.default.createDirectory(atPath: "\(recipe)/srv", withIntermediateDirectories: true)
        try "served by the image's command\n".write(toFile: "\(recipe)/srv/index.html", atomically: true, encoding: .utf8)
        try """
            # vm-size=1G
            # vm-kernel=host
            # vm-boot=firmware
            FROM debian:bookworm
            COPY busybox /usr/local/bin/busybox
            COPY srv /srv
            ENV GREETING=hi
            WORKDIR /srv
            USER nobody
            EXPOSE 8080
            CMD ["busybox", "httpd", "-f", "-p", "8080", "-h", "/srv"]

            """.write(toFile: "\(recipe)/Containerfile", atomically: true, encoding: .utf8)
        return recipe
    }

    /// Measured here (TCG, 2 shared cores, 2026-11-30): 263 s for the whole test with a cold cache
    /// (the Debian base made by mmdebstrap included; the finalisation 10 s); to the login prompt
    /// 41.5 s under SeaBIOS and 28.9 s under OVMF, the port answering about 1 s later.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/bin/busybox"), "needs busybox-static (scripts/install-deps.sh)"))
    func aFirmwareDiskBootsUnderSeaBIOSAndOVMFAndServesItsPort() throws {
        let dir = try TempDir("build-firmware", in: Self.scratch)
        let out = dir.file("fwboot")
        let r = try build(try firmwareRecipe(dir), output: out, arguments: ["--vm-format", "qcow2,raw,vmdk,vhdx,containerdisk"])
        try #require(r.status == 0, "imgbench build: exit \(r.status)\n\(r.stderr.suffix(3000))")
        let data = try #require(FileManager.default.contents(atPath: "\(out)/report.json"))
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let outputs = try #require(report["outputs"] as? [String: Any])
        #expect(outputs["vmBoot"] as? String == "firmware")
        #expect(outputs["exposedPorts"] as? [String] == ["8080/tcp"])
        #expect(outputs["kernelCommandLine"] as? String == "root=/dev/vda3 rw console=ttyS0")

        // The finalisation's parts, each timed and measured, and the overlay before and after the trim.
        let final = try #require(((report["finalisation"] as? [String: Any])?["vm"] as? [String: Any])?["finalisation"] as? [String: Any])
        let parts = try #require(final["parts"] as? [[String: Any]])
        #expect(parts.compactMap { $0["name"] as? String } == ["packages", "kernel", "files", "enable", "bootloader", "trim"])
        let packages = try #require(parts.first?["filesystemBytes"] as? Int)
        #expect(packages > 1 << 20, "systemd took \(packages) bytes")
        let before = try #require(final["allocatedBeforeTrim"] as? Int), after = try #require(final["allocatedAfterTrim"] as? Int)
        #expect(after <= before, "the trim grew the overlay: \(before) -> \(after)")

        // The flattened disk: a GPT with a BIOS boot partition, an ESP holding GRUB, and the root.
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", raw)
        let sfdisk = try HostTool.run("sfdisk", package: "fdisk", ["-J", raw])
        let table = ((try? JSONSerialization.jsonObject(with: Data(sfdisk.stdout.utf8))) as? [String: Any])?["partitiontable"] as? [String: Any]
        #expect(table?["label"] as? String == "gpt", "sfdisk -J: \(sfdisk.output)")
        let partitions = table?["partitions"] as? [[String: Any]] ?? []
        #expect(partitions.compactMap { $0["type"] as? String } == ["21686148-6449-6E6F-744E-656564454649", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"])
        let esp = 2 << 20, root = 128 << 20
        let mdir = try runProcess("/usr/bin/mdir", ["-i", "\(raw)@@\(esp)", "::/EFI/BOOT"], environment: ["MTOOLS_SKIP_CHECK": "1"])
        #expect(mdir.status == 0 && mdir.stdout.contains("BOOTX64"), "the ESP: \(mdir.output)")
        let unit = try HostTool.run("debugfs", package: "e2fsprogs", ["-R", "cat /etc/systemd/system/imgbench-image.service", "\(raw)?offset=\(root)"])
        #expect(unit.stdout.contains("ExecStart=\"/usr/local/bin/busybox\" \"httpd\""), "the service: \(unit.output)")
        #expect(unit.stdout.contains("User=nobody") && unit.stdout.contains("WorkingDirectory=/srv") && unit.stdout.contains("Environment=\"GREETING=hi\""))
        try? FileManager.default.removeItem(atPath: raw)

        // Every link passes qemu-img check, and a step's link writes only inside the root partition.
        let chain = try #require(outputs["vmChain"] as? [String])
        for link in chain { try Qemu.expectClean("\(out)/\(link)") }
        for link in chain.dropFirst().dropLast() {
            for extent in try Qemu.map("\(out)/\(link)") where (extent["depth"] as? Int) == 0 && (extent["data"] as? Bool) == true {
                let start = extent["start"] as? Int ?? 0
                #expect(start >= root, "\(link) writes at \(start), before the root partition")
            }
        }
        // The container side is unchanged: no layer holds the VM's service.
        let oci = try HostTool.run("skopeo", package: "skopeo", ["inspect", "--config", "oci:\(out)/oci:fwboot"])
        #expect(oci.status == 0 && !oci.stdout.contains("imgbench-image"))

        // The other formats hold the same disk; the containerDisk is an image; the domains validate.
        let formats = (outputs["vmFormats"] as? [[String: Any]] ?? []).compactMap { $0["format"] as? String }
        #expect(formats == ["raw", "vmdk", "vhdx", "containerdisk"], "\(formats)")
        for f in ["raw", "vmdk", "vhdx"] {
            try Qemu.imgOK("compare", "-f", "qcow2", "-F", f, "\(out)/vm/disk.qcow2", "\(out)/vm/disk.\(f)")
            if f != "raw" { try Qemu.imgOK("check", "-f", f, "\(out)/vm/disk.\(f)") }
        }
        let containerDisk = try HostTool.run("skopeo", package: "skopeo", ["inspect", "oci:\(out)/vm/containerdisk:fwboot"])
        #expect(containerDisk.status == 0, "skopeo inspect of the containerDisk: \(containerDisk.output)")
        for f in ["uefi", "bios"] {
            let v = try HostTool.run("virt-xml-validate", package: "libvirt-clients", ["\(out)/vm/libvirt-\(f).xml", "domain"])
            #expect(v.status == 0, "libvirt-\(f).xml: \(v.output)")
        }
        for f in ["raw", "vmdk", "vhdx"] { try? FileManager.default.removeItem(atPath: "\(out)/vm/disk.\(f)") }

        // It boots on its own under both firmwares, and the image's server answers.
        for firmware in ["bios", "uefi"] {
            let boot = try imgbench("boot", out, "--firmware", firmware, "--timeout", "420", "--format", "json")
            let result = (try? JSONSerialization.jsonObject(with: Data(boot.stdout.utf8))) as? [String: Any] ?? [:]
            #expect(boot.status == 0 && result["reachedLogin"] as? Bool == true, "\(firmware): exit \(boot.status): \(boot.output.suffix(3000))")
            let ports = result["ports"] as? [[String: Any]] ?? []
            #expect(ports.count == 1 && ports.first?["guest"] as? Int == 8080 && ports.first?["answered"] as? Bool == true, "\(firmware): \(ports)")
        }
        // The direct kernel boot still boots it, with the root partition from the report.
        let direct = try imgbench("boot", out, "--firmware", "kernel", "--timeout", "300")
        #expect(direct.status == 0 && direct.stdout.contains("booted"), "--firmware kernel: \(direct.output.suffix(2000))")
    }
}

extension BuildTests {
    /// Recipes/mysql (`# vm-boot=firmware`): the finalisation installs Debian's cloud kernel,
    /// systemd and GRUB; mariadb.service, enabled by the package, is disabled because the image's
    /// command runs mariadbd already; the VM boots under OVMF and MariaDB greets on 3306.
    /// Measured here (TCG, 2 shared cores, 2026-11-30): the build 2 min 10 s with the Debian base
    /// cached (the finalisation 50 s), the boot to MariaDB's greeting 37 s.
    @Test func mysqlBootsOnItsOwnAndMariaDBAnswers() throws {
        let dir = try TempDir("build-mysql-firmware", in: Self.scratch)
        let recipe = URL(fileURLWithPath: Self.tiny).deletingLastPathComponent().appendingPathComponent("mysql").path
        let text = try String(contentsOfFile: "\(recipe)/Containerfile", encoding: .utf8)
        try #require(text.hasPrefix("# vm-boot=firmware\n"), "Recipes/mysql no longer makes a firmware disk")
        let out = dir.file("mysql")
        let r = try build(recipe, output: out)
        try #require(r.status == 0, "imgbench build: exit \(r.status)\n\(r.stderr.suffix(3000))")
        // mariadb.service's wants-link is gone (the note says so when the link is made, not on a cache hit).
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", raw)
        let wants = try HostTool.run("debugfs", package: "e2fsprogs", ["-R", "ls /etc/systemd/system/multi-user.target.wants", "\(raw)?offset=\(128 << 20)"])
        #expect(wants.stdout.contains("imgbench-image.service") && !wants.stdout.contains("mariadb.service"), "\(wants.output)")
        try? FileManager.default.removeItem(atPath: raw)
        let boot = try imgbench("boot", out, "--firmware", "uefi", "--timeout", "600", "--format", "json")
        let result = (try? JSONSerialization.jsonObject(with: Data(boot.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(boot.status == 0 && result["reachedLogin"] as? Bool == true, "exit \(boot.status): \(boot.output.suffix(3000))")
        let ports = result["ports"] as? [[String: Any]] ?? []
        #expect(ports.count == 1 && ports.first?["guest"] as? Int == 3306 && ports.first?["answered"] as? Bool == true, "\(ports)")
    }
}

extension BuildTests {
    /// Two builds of a small `vm-boot=firmware` recipe without the step cache, under one
    /// SOURCE_DATE_EPOCH: the OCI image and the base link are identical, and so is everything of
    /// the disk outside the root filesystem: the GPT, GRUB's boot.img and core.img (grub-install
    /// writes the same bytes for the same modules and root UUID) and the ESP, whose folders and
    /// BOOTX64.EFI mtools dates by SOURCE_DATE_EPOCH. What still differs lies in the root
    /// filesystem, as on a `vm-boot=kernel` disk: the ext4 journal, inode times and where ext4
    /// placed the files dpkg unpacked. Measured here: 132 s with the Debian base cached.
    @Test func twoBuildsOfAFirmwareDiskDifferOnlyInsideTheRootFilesystem() throws {
        let dir = try TempDir("build-firmware-repro", in: Self.scratch)
        let recipe = try writeRecipe(dir, "fwrepro", """
            # vm-size=1G
            # vm-kernel=host
            # vm-boot=firmware
            FROM debian:bookworm
            RUN echo hello > /srv/hello.txt
            EXPOSE 8080
            CMD ["sleep", "infinity"]

            """)
        let p = try RunningProcess(try IMGBenchBinary.path(), ["verify-repro", recipe, "--cache", Self.cache, "--output", dir.file("repro"),
                                                            "--progress", "plain", "--format", "json"],
                                   environment: ["SOURCE_DATE_EPOCH": "1700000000"])
        let r = try #require(p.finish(within: 900), "imgbench verify-repro did not finish within 15 minutes")
        #expect(r.status == 0, "exit \(r.status): \(r.stderr.suffix(3000))")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout.prefix(2000))")
        #expect((json["oci"] as? [String: Any])?["identical"] as? Bool == true)
        let vm = try #require(json["vm"] as? [String: Any])
        let links = try #require(vm["links"] as? [[String: Any]])
        #expect(links.first?["step"] as? String == "base" && links.first?["identical"] as? Bool == true, "\(links)")
        // Nothing before the root partition (128 MiB) differs, and no owner lies outside it.
        let cluster = try #require(vm["clusterSize"] as? Int)
        let clusters = try #require(vm["differingClusters"] as? [Int])
        #expect(clusters.allSatisfy { $0 * cluster >= 128 << 20 }, "clusters before the root partition differ: \(clusters.filter { $0 * cluster < 128 << 20 })")
        let owners = try #require(vm["owners"] as? [[String: Any]])
        #expect(!owners.contains { ($0["what"] as? String)?.hasPrefix("outside the root filesystem") == true }, "\(owners.prefix(5))")
        // The ESP's entries carry SOURCE_DATE_EPOCH (2023-11-14 22:13 UTC), not the build's time.
        let raw = dir.file("first.raw")
        try Qemu.imgOK("convert", "-O", "raw", "\(dir.file("repro/first"))/vm/disk.qcow2", raw)
        let mdir = try runProcess("/usr/bin/mdir", ["-i", "\(raw)@@\(2 << 20)", "::/EFI/BOOT"], environment: ["MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"])
        #expect(mdir.status == 0 && mdir.stdout.contains("BOOTX64") && mdir.stdout.contains("2023-11-14"), "the ESP: \(mdir.output)")
        try? FileManager.default.removeItem(atPath: raw)
        expectNothingLeft(under: [Self.cache, dir.path], marker: "verify-repro-\(p.pid)")
    }
}
