import Foundation
import Testing
import TestSupport

/// The build sandbox against hostile recipes, base images and contexts: every attempt fails in
/// the step or is refused with a clear error, on both sides, and nothing changes on the host or
/// in the user's folders. Part of `BuildTests` (its cache, its serialization, root).
extension BuildTests {
    // MARK: - RUN steps

    /// Each step fails the build if its attempt succeeds (`! attempt`), and the host is checked
    /// after: the chroot escape, a block node of the host's disk, sysrq, mount, module loading,
    /// /sys and /proc/sys, a user namespace, and the host's network under `--network=none`.
    @Test func hostileRunStepsFailInsideTheirSandboxOnBothSides() throws {
        let dir = try TempDir("sandbox-run", in: Self.scratch)
        let mark = "imgbench-escape-\(UUID().uuidString.prefix(8))"
        let listener = try LoopbackListener()
        defer { listener.close() }
        let disk = Self.hostBlockDevice()
        let ksmBefore = try? String(contentsOfFile: "/sys/kernel/mm/ksm/run", encoding: .utf8)
        let swappinessBefore = try? String(contentsOfFile: "/proc/sys/vm/swappiness", encoding: .utf8)
        let steps = [
            // The chroot escape that leaves a chroot but not a pivoted root.
            #"RUN perl -e 'mkdir "x"; chroot "x"; chdir ".." for 1..64; chroot "."; open(F, ">", "/tmp/\#(mark)") and print F "x"'; rmdir x"#,
            "RUN mknod /hostdisk b \(disk) && ! head -c 512 /hostdisk >/dev/null; s=$?; rm -f /hostdisk; exit $s",
            "RUN ! sh -c 'echo h > /proc/sysrq-trigger'",
            "RUN ! mount -t tmpfs none /mnt",
            #"RUN perl -e 'exit(syscall(313, 0, 0, 0) == -1 ? 0 : 1)'"#,  // finit_module(0, NULL, 0)
            // add_key needs no capability: only the seccomp profile refuses it.
            #"RUN perl -e 'my ($t, $d, $p) = ("user", "imgbench", "v"); exit(syscall(248, $t, $d, $p, 1, -3) == -1 ? 0 : 1)'"#,
            "RUN ! sh -c 'echo 1 > /sys/kernel/mm/ksm/run'",
            "RUN ! sh -c 'echo 7 > /proc/sys/vm/swappiness'",
            "RUN ! unshare --user --map-root-user true",
            // No CAP_SYS_ADMIN (bit 21) among the effective capabilities.
            #"RUN perl -ne 'exit(hex($1) & (1 << 21) ? 1 : 0) if /^CapEff:\s+(\w+)/' /proc/self/status"#,
            // The host's network: reached by default, not under --network=none.
            "RUN bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(listener.port)'",
            "RUN --network=none ! bash -c 'exec 3<>/dev/tcp/127.0.0.1/\(listener.port)'",
        ]
        let recipe = try writeRecipe(dir, "hostile", Self.head + steps.joined(separator: "\n") + "\n")
        let out = dir.file("out")
        let r = try build(recipe, output: out, progress: "plain")
        #expect(r.status == 0, "a hostile step reached past its sandbox (exit \(r.status)):\n\(r.stderr.suffix(4000))")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/\(mark)"), "the chroot escape wrote on the host")
        #expect((try? String(contentsOfFile: "/sys/kernel/mm/ksm/run", encoding: .utf8)) == ksmBefore)
        #expect((try? String(contentsOfFile: "/proc/sys/vm/swappiness", encoding: .utf8)) == swappinessBefore)
        #expect(listener.accepted >= 2, "the default network did not reach the host on both sides (\(listener.accepted) connections)")
        let report = try readReport(out)
        #expect(report.steps.allSatisfy { $0.container != nil && $0.vm != nil }, "every step ran on both sides")
        expectNothingLeft(under: [Self.cache, dir.path], marker: mark)
        #expect(Self.runcContainers().isEmpty, "containers left: \(Self.runcContainers())")
    }

    // MARK: - The context

    /// A context that links to the host: a source through `rootlink -> /` is refused at its line;
    /// a link in the image to the host's /tmp takes COPY and ADD into the image's /tmp; a FIFO
    /// in the context is copied as a FIFO, not read (a read would hang the build).
    @Test func aHostileContextReachesNothingOnTheHost() throws {
        let dir = try TempDir("sandbox-context", in: Self.scratch)
        let mark = "imgbench-ctx-\(UUID().uuidString.prefix(8))"
        let stealing = try writeRecipe(dir, "stealing", Self.head + "COPY rootlink/etc/shadow /stolen-shadow\n")
        symlink("/", "\(stealing)/rootlink")
        var r = try build(stealing, output: dir.file("stolen"), progress: "none")
        #expect(r.status == 2 && r.stderr.contains("\(stealing)/Containerfile:4:") && r.stderr.contains("leaves the build context"),
                "exit \(r.status): \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("stolen")))

        let recipe = try writeRecipe(dir, "linking", Self.head + """
            COPY evil /evil
            COPY payload.txt /evil/payload.txt
            ADD payload.tar /evil/
            COPY pipe /pipe

            """)
        symlink("/tmp/\(mark)", "\(recipe)/evil")
        try "payload\n".write(toFile: "\(recipe)/payload.txt", atomically: true, encoding: .utf8)
        let staged = try dir.sub("staged")
        try "from the tar\n".write(toFile: "\(staged)/untarred.txt", atomically: true, encoding: .utf8)
        _ = try runProcess("/usr/bin/tar", ["-cf", "\(recipe)/payload.tar", "-C", staged, "untarred.txt"])
        #expect(mkfifo("\(recipe)/pipe", 0o644) == 0)
        let out = dir.file("out")
        r = try build(recipe, output: out, progress: "none")
        #expect(r.status == 0, "exit \(r.status): \(r.stderr.suffix(3000))")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/\(mark)"), "COPY or ADD wrote through the image's link onto the host")
        let rootfs = "\(out)/bundle/rootfs"
        #expect(FileManager.default.contents(atPath: "\(rootfs)/tmp/\(mark)/payload.txt") == Data("payload\n".utf8))
        #expect(FileManager.default.contents(atPath: "\(rootfs)/tmp/\(mark)/untarred.txt") == Data("from the tar\n".utf8))
        var st = stat()
        #expect(lstat("\(rootfs)/pipe", &st) == 0 && st.st_mode & S_IFMT == S_IFIFO, "the FIFO is not a FIFO in the image")
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", raw)
        #expect(try DiskFile.read(raw, "/tmp/\(mark)/payload.txt").content == Data("payload\n".utf8), "the VM side")
        #expect(try DiskFile.read(raw, "/tmp/\(mark)/untarred.txt").content == Data("from the tar\n".utf8), "the VM side")
        try? FileManager.default.removeItem(atPath: raw)
    }

    // MARK: - Outputs

    @Test func anOutputThatIsNotAnEarlierOutputIsRefusedBeforeTheBuild() throws {
        let dir = try TempDir("sandbox-out", in: Self.scratch)
        let recipe = try writeRecipe(dir, "r", Self.head + "RUN echo never > /never\n")
        let users = dir.file("users")
        for sub in ["users/sub", "users.old", "users.partial"] { _ = try dir.sub(sub) }
        try "precious\n".write(toFile: "\(users)/precious.txt", atomically: true, encoding: .utf8)
        try "a file\n".write(toFile: dir.file("file.txt"), atomically: true, encoding: .utf8)
        for (output, says) in [(users, "is not an imgbench output"), (dir.file("file.txt"), "is a file"), ("/", "root folder")] {
            let started = Date()
            let r = try build(recipe, output: output, progress: "none")
            #expect(r.status != 0 && r.stderr.contains(says) && r.stderr.contains(output), "--output \(output): exit \(r.status): \(r.stderr)")
            #expect(Date().timeIntervalSince(started) < 30, "--output \(output) was refused only after building")
        }
        #expect(FileManager.default.contents(atPath: "\(users)/precious.txt") == Data("precious\n".utf8))
        #expect(FileManager.default.fileExists(atPath: "\(users)/sub") && FileManager.default.fileExists(atPath: users + ".old")
                && FileManager.default.fileExists(atPath: users + ".partial"))
        #expect(FileManager.default.contents(atPath: dir.file("file.txt")) == Data("a file\n".utf8))

        // A user's stray `.partial` beside a fresh output is refused too; an empty folder is fine.
        let fresh = try dir.sub("fresh")
        let r = try build(recipe, output: fresh, progress: "none")
        #expect(r.status == 0, "\(r.stderr.suffix(2000))")
        #expect(FileManager.default.fileExists(atPath: "\(fresh)/.imgbench-output"), "the output carries no marker")
        let again = try build(recipe, output: fresh, progress: "none")
        #expect(again.status == 0, "an earlier output is not replaced: \(again.stderr.suffix(2000))")
    }

    // MARK: - Base images

    /// A base image whose layers hold a symlink to the host's /tmp and a block node readable by
    /// all: COPY and WORKDIR through the link stay in the image, and the node is out of other
    /// users' reach in the cache and the bundle.
    @Test func aHostileBaseImageReachesNothingOnTheHost() throws {
        let dir = try TempDir("sandbox-base", in: Self.scratch)
        let mark = "imgbench-app-\(UUID().uuidString.prefix(8))"
        let first = try writeRecipe(dir, "evilbase", Self.head + "RUN ln -s /tmp/\(mark) /app && mknod -m 666 /vda b 253 0\n")
        let base = dir.file("base")
        var r = try build(first, output: base, progress: "none")
        try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        let second = try writeRecipe(dir, "innocent", "# vm-size=1G\n# vm-kernel=host\nFROM oci:\(base)/oci:evilbase\nCOPY a.txt /app/a.txt\nWORKDIR /app/sub\nRUN pwd > here\n")
        try "a\n".write(toFile: "\(second)/a.txt", atomically: true, encoding: .utf8)
        let out = dir.file("out")
        r = try build(second, output: out, progress: "none")
        try #require(r.status == 0, "\(r.stderr.suffix(3000))")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/\(mark)"), "COPY or WORKDIR followed the image's link onto the host")
        let rootfs = "\(out)/bundle/rootfs"
        #expect(FileManager.default.contents(atPath: "\(rootfs)/tmp/\(mark)/a.txt") == Data("a\n".utf8), "the COPY went elsewhere")
        // The step's working directory is the link's target inside the image.
        let here = Data("/tmp/\(mark)/sub\n".utf8)
        #expect(FileManager.default.contents(atPath: "\(rootfs)/tmp/\(mark)/sub/here") == here)
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", raw)
        #expect(try DiskFile.read(raw, "/tmp/\(mark)/a.txt").content == Data("a\n".utf8), "the VM side's COPY went elsewhere")
        #expect(try DiskFile.read(raw, "/tmp/\(mark)/sub/here").content == here)
        try? FileManager.default.removeItem(atPath: raw)
        // The node is in the bundle as the image has it, but no other user reaches it.
        let nobody = try HostTool.run("setpriv", package: "util-linux",
                                      ["--reuid=65534", "--regid=65534", "--clear-groups", "test", "-r", "\(rootfs)/vda"])
        #expect(nobody.status != 0, "another user can read the base's device node in the bundle")
        for folder in ["\(out)/bundle", "\(Self.cache)/containers", "\(Self.cache)/bases"] {
            var st = stat()
            #expect(stat(folder, &st) == 0 && st.st_mode & 0o077 == 0, "\(folder) is open to other users: \(String(st.st_mode & 0o777, radix: 8))")
        }
    }

    // MARK: - Rootless

    /// A build by an unprivileged user (scripts/install-deps.sh makes `imgbench-rootless`, with
    /// subordinate ids): it enters a user namespace by itself, builds both sides (vfs, guestfs),
    /// keeps the image's owners, and its steps are as confined as root's.
    @Test(.enabled(if: Self.rootlessUser != nil, "no user imgbench-rootless with subordinate ids (scripts/install-deps.sh makes it)"))
    func anUnprivilegedUserBuildsBothSidesRootless() throws {
        let user = try #require(Self.rootlessUser)
        let binary = try IMGBenchBinary.path()
        let reach = try runProcess("/usr/bin/setpriv", ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "test", "-x", binary])
        try #require(reach.status == 0, "\(user.name) cannot run \(binary) (a folder on its path is closed to other users)")
        let dir = try TempDir("sandbox-rootless", in: Self.scratch)
        let mark = "imgbench-rootless-\(UUID().uuidString.prefix(8))"
        let cache = "\(Self.scratch)/imgbench-rootless-test-cache"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let steps = [
            "RUN echo kept > /kept && chown 42:42 /kept",
            #"RUN perl -e 'mkdir "x"; chroot "x"; chdir ".." for 1..64; chroot "."; open(F, ">", "/tmp/\#(mark)") and print F "x"'; rmdir x"#,
            "RUN ! mount -t tmpfs none /mnt",
            "RUN --network=none ! getent hosts deb.debian.org",
        ]
        let recipe = try writeRecipe(dir, "rootless", Self.head + steps.joined(separator: "\n") + "\n")
        _ = try runProcess("/usr/bin/chown", ["-R", "\(user.uid):\(user.gid)", dir.path, cache])
        let out = dir.file("out")
        let p = try RunningProcess("/usr/bin/setpriv", ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "env", "HOME=\(dir.path)",
                                                        binary, "build", recipe, "--cache", cache, "--output", out, "--progress", "plain"])
        let r = try #require(p.finish(within: 900), "the rootless build did not finish within 15 minutes")
        #expect(r.status == 0, "rootless build: exit \(r.status)\n\(r.stderr.suffix(4000))")
        #expect(r.stderr.contains("building rootless"), "\(r.stderr.prefix(2000))")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/\(mark)"), "the chroot escape wrote on the host")
        // The image keeps the step's owner, 42:42, though no such id is the user's.
        let listing = try runProcess("/usr/bin/umoci", ["stat", "--image", "\(out)/oci:rootless"])
        #expect(listing.status == 0, "umoci stat: \(listing.output)")
        let layers = try FileManager.default.contentsOfDirectory(atPath: "\(out)/oci/blobs/sha256")
        let owners = try layers.compactMap { blob -> String? in
            let t = try runProcess("/usr/bin/tar", ["-tvzf", "\(out)/oci/blobs/sha256/\(blob)", "--numeric-owner"])
            return t.status == 0 ? t.stdout.split(separator: "\n").first { $0.hasSuffix(" kept") || $0.hasSuffix("/kept") }.map(String.init) : nil
        }
        #expect(owners.contains { $0.contains(" 42/42 ") }, "the layer's owner of /kept: \(owners)")
        let raw = dir.file("disk.raw")
        try Qemu.imgOK("convert", "-O", "raw", "\(out)/vm/disk.qcow2", raw)
        #expect(try DiskFile.read(raw, "/kept").content == Data("kept\n".utf8))
        try? FileManager.default.removeItem(atPath: raw)
        expectNothingLeft(under: [cache, dir.path], marker: mark)

        // The loop backend needs the host's root, and says so before anything runs.
        let loop = try runProcess("/usr/bin/setpriv", ["--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups",
                                                        binary, "build", recipe, "--cache", cache, "--output", out, "--vm-backend", "loop"])
        #expect(loop.status != 0 && loop.stderr.contains("guestfs"), "\(loop.output)")
    }

    /// The unprivileged test user, when this host has one with subordinate ids.
    static let rootlessUser: (name: String, uid: uid_t, gid: gid_t)? = {
        guard getuid() == 0, let pw = getpwnam("imgbench-rootless"),
              let subuid = try? String(contentsOfFile: "/etc/subuid", encoding: .utf8),
              subuid.split(separator: "\n").contains(where: { $0.hasPrefix("imgbench-rootless:") }) else { return nil }
        return ("imgbench-rootless", pw.pointee.pw_uid, pw.pointee.pw_gid)
    }()

    // MARK: - Helpers

    /// `MAJOR MINOR` of a block device of this host (its first disk, else loop0).
    static func hostBlockDevice() -> String {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []).sorted()
        let disk = names.first { !$0.hasPrefix("loop") && !$0.hasPrefix("zram") && !$0.hasPrefix("ram") } ?? "loop0"
        let dev = (try? String(contentsOfFile: "/sys/block/\(disk)/dev", encoding: .utf8)) ?? "7:0"
        return dev.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: ":", with: " ")
    }

    /// The containers runc still knows in imgbench's state folder.
    static func runcContainers() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: "/run/imgbench/runc")) ?? []
    }
}

/// A TCP listener on 127.0.0.1 at a free port that counts the connections it accepts.
final class LoopbackListener: @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    private let lock = NSLock()
    private var count = 0
    var accepted: Int { lock.withLock { count } }

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard fd >= 0, bound == 0, listen(fd, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        start()
    }

    private func start() {
        let listening = fd
        Thread.detachNewThread { [weak self] in
            while true {
                let c = accept(listening, nil, nil)
                if c < 0 { return }
                self?.lock.withLock { self?.count += 1 }
                Glibc.close(c)
            }
        }
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }
}
