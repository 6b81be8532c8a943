import Foundation
import Host
@testable import ImageBuild
import OCI
import QcowIO
import RecipePlan
import TestSupport
import Testing

// vm-boot=firmware: the GPT layout, the base disk made from it, the image's service unit and
// the QEMU command lines of a firmware boot.

@Test(arguments: [512 << 20, 1 << 30, 4 << 30, (4 << 30) + (3 << 20)] as [UInt64])
func theRootPartitionIsAlignedForTheLargestClusterAndLeavesRoomForTheBackupGPT(size: UInt64) {
    let p = DiskLayout.plan(size: size, seed: "k")
    let twoMiB: UInt64 = 2 << 20
    #expect(p.biosBoot.offset == 1 << 20 && p.biosBoot.end == p.esp.offset)
    #expect(p.esp.offset % twoMiB == 0 && p.esp.end == p.root.offset)
    #expect(p.root.offset % twoMiB == 0 && p.root.end % twoMiB == 0)
    #expect(p.root.end <= size - (1 << 20) && size - p.root.end < 3 << 20)
    // The same seed names the same GUIDs; another seed others; the place never depends on it.
    #expect(DiskLayout.plan(size: size, seed: "k") == p)
    let other = DiskLayout.plan(size: size, seed: "other")
    #expect(other.diskUUID != p.diskUUID && other.root.uuid != p.root.uuid && other.root.offset == p.root.offset)
    #expect(p.espVolumeID.count == 8 && p.espVolumeID.allSatisfy(\.isHexDigit))
}

@Test func sfdiskWritesThePlannedTableAndTheReaderFindsTheRoot() throws {
    let dir = try TempDir("gpt")
    let raw = dir.file("d.raw")
    FileManager.default.createFile(atPath: raw, contents: nil)
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: raw))
    try h.truncate(atOffset: 1 << 30)
    try h.close()
    let plan = DiskLayout.plan(size: 1 << 30, seed: "seed")
    let r = try Command.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", raw], input: Data(plan.sfdiskScript.utf8))
    #expect(r.status == 0, "\(r.output)")
    let json = try Command.check("sfdisk -J", ["sfdisk", "-J", raw])
    let table = try #require((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["partitiontable"] as? [String: Any])
    #expect((table["id"] as? String) == plan.diskUUID)
    let parts = try #require(table["partitions"] as? [[String: Any]])
    #expect(parts.map { $0["type"] as? String } == [DiskLayout.biosBootType, DiskLayout.espType, DiskLayout.rootType])
    #expect(parts.map { ($0["start"] as? Int).map(UInt64.init) } == plan.partitions.map { $0.offset / 512 })
    let root = try #require(try DiskLayout.read(try RawImage(path: raw)))
    #expect(root == plan.root)
    // A disk without a GPT has no partition to read.
    let plain = dir.file("plain.raw")
    try Data(count: 1 << 20).write(to: URL(fileURLWithPath: plain))
    #expect(try DiskLayout.read(try RawImage(path: plain)) == nil)
}

@Test func aFirmwareBaseDiskHasTheGPTAnEmptyESPAndTheRootAtItsOffset() throws {
    let dir = try TempDir("fwbase")
    let root = try dir.sub("root")
    try Data("hello\n".utf8).write(to: URL(fileURLWithPath: "\(root)/f"))
    try FileManager.default.createDirectory(atPath: "\(root)/etc", withIntermediateDirectories: true)
    // mke2fs -d writes each file's atime, and reading a file whose atime is not past its mtime
    // and ctime moves the atime (relatime): the first make would change what the second sees
    // unless both ran within one clock tick of the files' creation (a loaded machine failed it).
    // atimes past the ctimes are left alone.
    for times in [["-m", "-d", "@1600000000"], ["-a", "-d", "@2000000000"]] {
        let r = try Command.run(["find", root, "-exec", "touch", "-h"] + times + ["{}", "+"])
        try #require(r.status == 0, "\(r.output)")
    }
    var settings = VMSettings()
    settings.size = 512 << 20
    settings.boot = .firmware
    try BaseDisk.make(root: root, qcow2: dir.file("a.qcow2"), settings: settings, sourceDateEpoch: 1_700_000_000, seed: "s")
    try BaseDisk.make(root: root, qcow2: dir.file("b.qcow2"), settings: settings, sourceDateEpoch: 1_700_000_000, seed: "s")
    try Qemu.expectClean(dir.file("a.qcow2"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: dir.file("a.qcow2"))) == Data(contentsOf: URL(fileURLWithPath: dir.file("b.qcow2"))))
    let raw = dir.file("a.raw")
    _ = try Qemu.imgOK("convert", "-O", "raw", dir.file("a.qcow2"), raw)
    let plan = DiskLayout.plan(size: settings.size, seed: "s")
    #expect(try DiskLayout.read(try RawImage(path: raw)) == plan.root)
    let cat = try Command.check("debugfs", ["debugfs", "-R", "cat /f", "\(raw)?offset=\(plan.root.offset)"])
    #expect(cat.hasSuffix("\nhello\n"), "\(cat)")
    // The ESP is never mounted on the host: mtools reads it at its offset.
    let dirList = try Command.run(["mdir", "-i", "\(raw)@@\(plan.esp.offset)", "::/"], environment: ["MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"])
    #expect(dirList.status == 0, "\(dirList.output)")
    #expect(dirList.output.contains("ESP"))
}

@Test func theImageServiceRunsTheContainersCommandAsItsUserInItsFolder() throws {
    var c = ContainerConfig(env: ["PATH=/usr/local/bin:/usr/bin", "GREETING=hi $HOME 100%"])
    c.entrypoint = ["busybox"]
    c.cmd = ["httpd", "-f", "-p", "8080", "a \"quoted\" \\ arg"]
    c.user = "nobody:nogroup"
    c.workingDir = "/srv/100%"
    let unit = try #require(try ImageService.unit(config: c) { program, path in
        #expect(path == "/usr/local/bin:/usr/bin")
        return program == "busybox" ? "/usr/local/bin/busybox" : nil
    })
    #expect(unit.contains("\nExecStart=\"/usr/local/bin/busybox\" \"httpd\" \"-f\" \"-p\" \"8080\" \"a \\\"quoted\\\" \\\\ arg\"\n"))
    #expect(unit.contains("\nEnvironment=\"GREETING=hi $$HOME 100%%\"\n"))
    #expect(unit.contains("\nUser=nobody\nGroup=nogroup\n"))
    #expect(unit.contains("\nWorkingDirectory=/srv/100%%\n"))
    #expect(unit.contains("\nWantedBy=multi-user.target\n"))
    // A uid alone, no folder: / as Docker runs it.
    c.user = "1000"
    c.workingDir = nil
    let u2 = try #require(try ImageService.unit(config: c) { _, _ in "/bin/busybox" })
    #expect(u2.contains("\nUser=1000\nWorkingDirectory=/\n"))
    // No command, no unit; a command not on the PATH is an error that names it.
    #expect(try ImageService.unit(config: ContainerConfig(env: [])) { _, _ in nil } == nil)
    #expect(throws: BuildError.self) { try ImageService.unit(config: c) { _, _ in nil } }
}

@Test func firmwareBootsHaveNoKernelAndBootTheDiskFirst() {
    var q = QemuInvocation(firmware: .uefi(code: "/c.fd", vars: "/tmp/v.fd"), accelerator: "tcg")
    q.drives = [.init(file: "/d.qcow2", format: "qcow2", snapshot: true, bootIndex: 0)]
    q.network = .init(forwards: [.init(host: 40000, guest: 8080)], romfile: "")
    let a = q.argv
    #expect(!a.contains("-kernel") && !a.contains("-no-reboot") && !a.contains("-initrd"))
    #expect(a.contains("if=pflash,format=raw,unit=0,readonly=on,file=/c.fd"))
    #expect(a.contains("if=pflash,format=raw,unit=1,file=/tmp/v.fd"))
    #expect(a.contains("if=none,id=vd0,file=/d.qcow2,format=qcow2,snapshot=on"))
    #expect(a.contains("virtio-blk-pci,drive=vd0,bootindex=0"))
    #expect(a.contains("user,id=n0,hostfwd=tcp:127.0.0.1:40000-:8080"))
    #expect(a.contains("virtio-net-pci,netdev=n0,romfile="))
    let bios = QemuInvocation(firmware: .bios, accelerator: "tcg").argv
    #expect(!bios.contains { $0.contains("pflash") } && !bios.contains("-kernel"))
    // The direct boot is unchanged.
    var direct = QemuInvocation(kernel: "/k", initrd: "/i", append: "root=/dev/vda", accelerator: "tcg")
    direct.drives = [.init(file: "/d.qcow2", format: "qcow2")]
    #expect(direct.argv.contains("-no-reboot") && direct.argv.contains("/k") && direct.argv.contains("file=/d.qcow2,if=virtio,format=qcow2"))
}

@Test func theHostnameIsTheRecipeNameCutToWhatAHostnameTakes() {
    #expect(VMPass.hostname("My_App.v2") == "my-app-v2")
    #expect(VMPass.hostname("__") == "imgbench")
    #expect(VMPass.hostname(String(repeating: "a", count: 80)).count == 63)
}

@Test func theGrubMenuBootsTheRootByUUIDWithTheSerialConsole() {
    let cfg = Bootloader.config(rootUUID: "abcd", kernel: "/boot/vmlinuz-6", initrd: "/boot/initrd.img-6")
    #expect(cfg.contains("search --no-floppy --fs-uuid --set=root abcd\n"))
    #expect(cfg.contains("linux /boot/vmlinuz-6 root=UUID=abcd ro console=tty0 console=ttyS0,115200n8\n"))
    #expect(cfg.contains("initrd /boot/initrd.img-6\n}\n"))
    #expect(cfg.contains("serial --unit=0 --speed=115200\n"))
}

@Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/virt-xml-validate") && FileManager.default.isExecutableFile(atPath: "/usr/bin/xmllint"),
               "needs virt-xml-validate (libvirt-clients) and xmllint (libxml2-utils): scripts/install-deps.sh"))
func theLibvirtDomainsValidateAgainstLibvirtsSchema() throws {
    let dir = try TempDir("libvirt")
    for f in LibvirtDomain.Firmware.allCases {
        let xml = LibvirtDomain.xml(name: "web<1>", disk: "/var/lib/images/a b/disk.qcow2", firmware: f, exposedPorts: ["8080/tcp", "53/udp"])
        let file = dir.file("\(f.rawValue).xml")
        try Data(xml.utf8).write(to: URL(fileURLWithPath: file))
        let r = try Command.run(["virt-xml-validate", file, "domain"])
        #expect(r.status == 0, "\(f): \(r.output)\n\(xml)")
        #expect(xml.contains("<imgbench:port>8080/tcp</imgbench:port>") && xml.contains("<name>web&lt;1&gt;</name>"))
        #expect(xml.contains("<os firmware='efi'>") == (f == .uefi))
        // virsh define accepts it: libvirt's test driver, in the client, needs no daemon (no
        // libvirtd runs on these hosts: PID 1 is not systemd).
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/virsh") {
            let d = try Command.run(["virsh", "-c", "test:///default", "define", file])
            #expect(d.status == 0 && d.output.contains("defined from"), "virsh define \(f): \(d.output)")
        }
    }
}

@Test func vmFormatsParseAndRefuseWhatQemuImgDoesNotWrite() throws {
    #expect(try VMFormats.parse("qcow2,raw, vmdk,vhdx,containerdisk,raw") == [.qcow2, .raw, .vmdk, .vhdx, .containerdisk])
    #expect(throws: BuildError.self) { try VMFormats.parse("raw,ova") }
    #expect(throws: BuildError.self) { try VMFormats.parse("") }
}

@Test func theProgramsOfAUnitIncludeThoseItsShellWrapperExecs() {
    let mariadb = """
        [Service]
        ExecStartPre=/usr/bin/install -m 755 -o mysql -g root -d /var/run/mysqld
        ExecStart=/bin/sh -c "set -f; [ ! -e /usr/bin/galera_recovery ] && VAR= || \\
         VAR=`/usr/bin/galera_recovery`; [ $? -eq 0 ] || exit 1; \\
         exec /usr/sbin/mariadbd $MYSQLD_OPTS $_WSREP_NEW_CLUSTER $VAR"
        ExecStartPost=!/etc/mysql/debian-start
        """
    let p = VMPass.startPrograms(unit: mariadb)
    #expect(p.contains("mariadbd") && p.contains("sh") && !p.contains("install") && !p.contains("debian-start"))
    #expect(VMPass.startPrograms(unit: "ExecStart=-/usr/sbin/nginx -g 'daemon off;'\n").contains("nginx"))
}
