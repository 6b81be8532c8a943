import CGuestfs
import Foundation
import Host

/// A qcow2 image opened inside libguestfs's appliance (a small VM QEMU runs): the
/// `--vm-backend guestfs` way to run a build step on the disk, which needs no root, no loop device
/// and no FUSE, at the price of starting the appliance (about 20 s under TCG here).
///
/// The handle owns the C pointer: the initialiser fails when libguestfs cannot make one, `close()`
/// shuts the appliance down (flushing the disk) and reports libguestfs's error, `deinit` frees
/// what is left.
public final class GuestfsDisk {
    private var g: OpaquePointer?
    public let image: String

    /// Starts the appliance on `image` (qcow2, writable) with the network on (for apt) and mounts
    /// the filesystem-only disk (or, with `partitioned`, the GPT disk's root partition, the
    /// third) at the appliance's /sysroot.
    public init(image: String, partitioned: Bool = false) throws {
        self.image = image
        // libguestfs reads its backend from the environment; the direct backend with forced TCG
        // is what works on these hosts (KVM aborts).
        setenv("LIBGUESTFS_BACKEND", "direct", 0)
        guard let h = guestfs_create() else {
            throw BuildError.invalid("\(image): libguestfs could not create a handle")
        }
        g = h
        // Errors come back through `guestfs_last_error` into one imgbench error; the default
        // handler would also print each on stderr ("libguestfs: error: ..."), a second line.
        guestfs_set_error_handler(h, nil, nil)
        if ProcessInfo.processInfo.environment["LIBGUESTFS_BACKEND_SETTINGS"] == nil {
            try check(withCStringArray(["force_tcg"]) { guestfs_set_backend_settings(h, $0) }, "set_backend_settings")
        }
        try check(guestfs_set_network(h, 1), "set_network")
        var opts = guestfs_add_drive_opts_argv()
        opts.bitmask = GuestfsOptionBit.addDriveFormat
        let rc: Int32 = "qcow2".withCString { fmt in
            opts.format = fmt
            return guestfs_add_drive_opts_argv(h, image, &opts)
        }
        try check(rc, "add_drive \(image)")
        try check(guestfs_launch(h), "launch")
        let device = partitioned ? "/dev/sda3" : "/dev/sda"
        try check(guestfs_mount(h, device, "/"), "mount \(device)")
    }

    deinit {
        if let h = g { guestfs_close(h) }
    }

    /// A fixed appliance (libguestfs-make-fixed-appliance) in `folder`, made as this user when
    /// missing or older than the host's package database, for a rootless build to hand libguestfs
    /// as LIBGUESTFS_PATH: supermin, which otherwise builds the appliance at launch, makes one
    /// that cannot boot when it runs inside a user namespace.
    public static func prepareFixedAppliance(in folder: String) throws {
        var st = stat(), packages = stat()
        let fresh = stat("\(folder)/README.fixed", &st) == 0 && stat("/var/lib/dpkg/status", &packages) == 0
            && st.st_mtim.tv_sec >= packages.st_mtim.tv_sec
        guard !fresh else { return }
        try? FileSystem.removeTree(folder)
        try FileSystem.makeDirectories((folder as NSString).deletingLastPathComponent, mode: 0o700)
        try Command.check("making libguestfs's appliance for rootless builds", ["libguestfs-make-fixed-appliance", folder])
    }

    /// Unmounts, shuts the appliance down (so every write reaches the image) and frees the handle.
    public func close() throws {
        guard let h = g else { return }
        defer {
            guestfs_close(h)
            g = nil
        }
        try check(guestfs_umount_all(h), "umount_all")
        try check(guestfs_shutdown(h), "shutdown")
    }

    func handle() throws -> OpaquePointer {
        guard let h = g else { throw BuildError.invalid("\(image): libguestfs handle already closed") }
        return h
    }

    func check(_ rc: Int32, _ what: String) throws {
        if rc == -1 { throw error(what) }
    }

    func error(_ what: String) -> HostError {
        let message = g.flatMap { guestfs_last_error($0) }.map { String(cString: $0) } ?? "unknown error"
        return HostError.commandFailed(what: "libguestfs \(what) on \(image)", argv: ["guestfs_\(what.split(separator: " ")[0])"],
                                        status: -1, outputTail: message)
    }

    /// Runs `argv` chrooted into the disk's root; returns its standard output. On failure the
    /// error holds what the command wrote to standard error.
    public func run(_ argv: [String]) throws -> String {
        let h = try handle()
        guard let out = withCStringArray(argv, { guestfs_command(h, $0) }) else { throw error("command") }
        defer { free(out) }
        return String(cString: out)
    }

    /// Unpacks a local tar file into `directory` of the disk, owners and modes as recorded.
    public func tarIn(_ tarFile: String, to directory: String) throws {
        let h = try handle()
        try check(guestfs_mkdir_p(h, directory), "mkdir_p \(directory)")
        var opts = guestfs_tar_in_opts_argv()
        opts.bitmask = GuestfsOptionBit.tarInXattrs
        opts.xattrs = 1
        try check(guestfs_tar_in_opts_argv(h, tarFile, directory, &opts), "tar_in \(directory)")
    }

    public func write(_ path: String, _ content: String) throws {
        let h = try handle()
        let bytes = Array(content.utf8)
        try check(bytes.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { guestfs_write(h, path, $0.baseAddress, b.count) }
        }, "write \(path)")
    }

    public func download(_ path: String, to local: String) throws {
        try check(guestfs_download(try handle(), path, local), "download \(path)")
    }

    /// The names in `directory`; none when it is not a folder (`/boot` of a `FROM scratch`
    /// image), as a root on this host lists it.
    public func list(_ directory: String) throws -> [String] {
        let h = try handle()
        let isDir = guestfs_is_dir(h, directory)
        try check(isDir, "is_dir \(directory)")
        guard isDir == 1 else { return [] }
        guard let names = guestfs_ls(h, directory) else { throw error("ls \(directory)") }
        defer {
            var i = 0
            while let p = names[i] { free(p); i += 1 }
            free(names)
        }
        var out: [String] = []
        var i = 0
        while let p = names[i] {
            out.append(String(cString: p))
            i += 1
        }
        return out
    }
}

/// The optional-argument bits of the `*_argv` calls, which guestfs.h defines with `UINT64_C`
/// macros that Swift does not import.
enum GuestfsOptionBit {
    /// GUESTFS_ADD_DRIVE_OPTS_FORMAT_BITMASK
    static let addDriveFormat: UInt64 = 1 << 1
    /// GUESTFS_TAR_IN_OPTS_XATTRS_BITMASK
    static let tarInXattrs: UInt64 = 1 << 1
}
