import Foundation
import Host
import OCI

/// Whether a driver works on this machine, and if not, why.
public struct DriverStatus: Codable, Sendable, Equatable {
    public var name: String
    public var works: Bool
    /// What the driver is, in a few words.
    public var summary: String
    /// Why it does not work here (or what it runs on, when it does).
    public var reason: String
}

/// A storage driver: it prepares a writable root on a chain of parent layers, captures what
/// changed in it as an OCI layer, and releases it. A released layer stays in the driver's store
/// and can be the parent of the next one.
///
/// ```
/// STORE/<driver>/layers/<id>/parent   the parent's id (absent for a first layer)
/// STORE/<driver>/layers/<id>/...      the driver's own data for the layer
/// ```
public protocol StorageDriver: AnyObject {
    var name: String { get }
    var store: String { get }
    /// Makes a writable root for a new layer `id` on `parent` and returns its path.
    func prepare(_ id: String, parent: String?) throws -> String
    /// The diff of a prepared layer, as `capture` reads it.
    func diffSource(_ id: String) throws -> DiffSource
    /// Unmounts a prepared layer, keeping its content as a possible parent.
    func release(_ id: String) throws
    /// Deletes a layer (released or not).
    func remove(_ id: String) throws
    /// Bytes on disk that belong to this layer alone (its writable layer).
    func writableBytes(_ id: String) throws -> UInt64
    /// Releases everything the driver holds (mounts, loop devices).
    func close() throws
    /// Makes a released layer `id` without a parent whose content is a copy of the folder `tree`
    /// (`FileSystem.copyTree`): what applying the tree's layer blob gives, without decompressing
    /// and parsing the blob, so a build need not wait for the blob first. A copy, not hard
    /// links: a link changes the source inode's ctime, and `mkfs.ext4 -d` writes a base root's
    /// times into the VM's base disk, which must come out the same bit for bit.
    func importTree(_ id: String, from tree: String) throws
    /// Makes a released layer `id` without a parent whose content is the folder `tree` itself, not
    /// a copy, where the driver can stack on a folder it does not own: a union mount's lower
    /// branch. Nothing is written in `tree` or copied from it (a build's base root: the floor's
    /// overlay on mmdebstrap's folder, without the 180 MB copy). `tree` must not change while the
    /// layer exists: `chain` checks, each time the layer is used, that its folder is still the
    /// same one (device, inode and ctime), so that a folder made again or gone makes the layer
    /// unusable, never silently different. A driver that writes into its layers (vfs, btrfs)
    /// copies, as `importTree` does.
    func referenceTree(_ id: String, tree: String) throws
}

extension StorageDriver {
    var root: String { store + "/" + name }
    func layerDir(_ id: String) -> String { root + "/layers/" + id }

    func parent(of id: String) -> String? {
        (try? String(contentsOfFile: layerDir(id) + "/parent", encoding: .utf8))
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// The layer and its ancestors, nearest first. A layer made by `referenceTree` whose folder
    /// is gone or was made again since is an error: it is no longer what it was captured as.
    public func chain(_ id: String) throws -> [String] {
        var result: [String] = []
        var cur: String? = id
        while let c = cur {
            guard FileSystem.exists(layerDir(c)) else { throw LayersError.layerNotFound(driver: name, layer: c) }
            guard !result.contains(c) else { throw LayersError.driverFailure(driver: name, layer: id, message: "parent chain loops at \(c)") }
            if let r = TreeReference.read(layerDir(c)), !r.isCurrent {
                throw LayersError.driverFailure(driver: name, layer: c, message: "its folder \(r.path) is gone or was made again since the layer was made")
            }
            result.append(c)
            cur = parent(of: c)
        }
        return result
    }

    /// Makes the layer's directory and records its parent; refuses an id that exists.
    func createLayerDir(_ id: String, parent: String?) throws {
        guard !id.isEmpty, !id.contains("/"), id != ".", id != ".." else {
            throw LayersError.invalidArgument("layer id \"\(id)\" must be a plain name")
        }
        if let p = parent { _ = try chain(p) }
        guard !FileSystem.exists(layerDir(id)) else { throw LayersError.layerExists(driver: name, layer: id) }
        try FileSystem.makeDirectories(layerDir(id))
        if let p = parent { try Data(p.utf8).write(to: URL(fileURLWithPath: layerDir(id) + "/parent")) }
    }

    /// Makes `STORE/<driver>/layers`, where the layers go.
    func createLayersDir() throws { try FileSystem.makeDirectories(root + "/layers") }

    /// A parentless layer prepared, `tree` copied into its writable root, released.
    public func importTree(_ id: String, from tree: String) throws {
        let root = try prepare(id, parent: nil)
        do {
            try FileSystem.copyTree(from: tree, to: root)
            try release(id)
        } catch {
            try? remove(id)
            throw error
        }
    }

    /// A copy (`importTree`): what a driver that writes into its layers can do.
    public func referenceTree(_ id: String, tree: String) throws { try importTree(id, from: tree) }

    /// The folder a layer made by `referenceTree` stands on; nil for any other layer.
    public func referencedTree(_ id: String) -> String? { TreeReference.read(layerDir(id))?.path }

    /// Whether the driver holds a layer of this id.
    public func hasLayer(_ id: String) -> Bool { FileSystem.exists(layerDir(id)) }

    /// Captures a prepared layer into a blob store.
    public func capture(_ id: String, into store: BlobStore, options: CaptureOptions = .init(), tee: ByteSink? = nil) throws -> CaptureResult {
        try LayerCapture.capture(try diffSource(id), into: store, options: options, tee: tee)
    }
}

/// A driver that mounts a union of directories for a prepared layer (overlay, fuse-overlayfs,
/// aufs, unionfs): the layer's changes land in its `diff` directory, below `merged`, the
/// writable root. Preparing, releasing, removing, measuring and closing are the same for each;
/// only the mount differs.
///
/// ```
/// layers/<id>/diff     what this layer changed (a lower branch of its children once released)
/// layers/<id>/merged   the writable root while prepared
/// ```
protocol UnionMountDriver: StorageDriver {
    /// Directories the mount needs in the layer's directory beside `diff` and `merged`.
    var scratchDirectories: [String] { get }
    /// Mounts the union for a layer whose directories exist.
    func mount(_ id: String) throws
}

extension UnionMountDriver {
    var scratchDirectories: [String] { [] }

    func diffDir(_ id: String) -> String { layerDir(id) + "/diff" }
    func mergedDir(_ id: String) -> String { layerDir(id) + "/merged" }

    /// Makes the layer's directories and mounts it; a layer that cannot be mounted is removed.
    func prepare(_ id: String, parent: String?) throws -> String {
        try createLayerDir(id, parent: parent)
        let dir = layerDir(id)
        for d in ["diff"] + scratchDirectories + ["merged"] { try FileSystem.makeDirectories(dir + "/" + d) }
        do {
            try mount(id)
        } catch {
            try? FileSystem.removeTree(dir)
            throw error
        }
        return mergedDir(id)
    }

    func release(_ id: String) throws { try Mounts.unmount(mergedDir(id)) }

    /// The tree copied into the layer's `diff` directly, never mounted: a parentless layer's
    /// content is its `diff`, and writing it through a union mount would only add the mount.
    func importTree(_ id: String, from tree: String) throws {
        try makeParentless(id) { diff in
            try FileSystem.makeDirectories(diff)
            try FileSystem.copyTree(from: tree, to: diff)
        }
    }

    /// The layer's `diff` is a symbolic link to `tree`, which the union mounts of its children
    /// follow as their lowest branch; `TreeReference` records which folder it was.
    func referenceTree(_ id: String, tree: String) throws {
        let reference = try TreeReference(tree)
        try makeParentless(id) { diff in
            guard symlink(reference.path, diff) == 0 else { throw HostError.systemCall(path: diff, operation: "symlink", errno: errno) }
            try reference.write(layerDir(id))
        }
    }

    /// A released layer without a parent: its directories, and its `diff` as `makeDiff` makes
    /// it; nothing of it is left when that fails.
    private func makeParentless(_ id: String, _ makeDiff: (_ diff: String) throws -> Void) throws {
        try createLayerDir(id, parent: nil)
        let dir = layerDir(id)
        do {
            for d in scratchDirectories + ["merged"] { try FileSystem.makeDirectories(dir + "/" + d) }
            try makeDiff(diffDir(id))
        } catch {
            try? FileSystem.removeTree(dir)
            throw error
        }
    }

    /// Removes the layer: a `diff` that is a link to a referenced folder goes, never the folder
    /// (`FileSystem.removeTree` does not follow links).
    func remove(_ id: String) throws {
        try release(id)
        try FileSystem.removeTree(layerDir(id))
    }

    func writableBytes(_ id: String) throws -> UInt64 { try FileSystem.allocatedBytes(diffDir(id)) }

    /// Releases every layer this process still has mounted (not those of another build using the
    /// same store at once).
    func close() throws {
        for id in (try? FileSystem.children(root + "/layers")) ?? [] where Mounts.isTracked(mergedDir(id)) {
            try release(id)
        }
    }
}

/// Every driver this module knows, by name.
public enum StorageDrivers {
    public static let names = StorageDriverKind.allCases.map(\.rawValue)

    /// Opens a driver on a store directory, or says why it cannot work here.
    public static func open(_ name: String, store: String) throws -> StorageDriver {
        let status = probe(name)
        guard status.works else { throw LayersError.driverUnavailable(driver: name, reason: status.reason) }
        try FileSystem.makeDirectories(store)
        switch name {
        case "overlay": return try OverlayDriver(store: store, fuse: false)
        case "fuse-overlayfs": return try OverlayDriver(store: store, fuse: true)
        case "btrfs": return try BtrfsDriver(store: store)
        case "vfs": return try VFSDriver(store: store)
        case "unionfs": return try UnionfsDriver(store: store)
        case "aufs": return try AufsDriver(store: store)
        default:
            throw LayersError.invalidArgument("unknown storage driver \"\(name)\"; known: \(names.joined(separator: ", "))")
        }
    }

    public static func probe(_ name: String) -> DriverStatus {
        let root = getuid() == 0
        func status(_ summary: String, _ checks: [(Bool, String)], works: String) -> DriverStatus {
            if let failed = checks.first(where: { !$0.0 }) {
                return DriverStatus(name: name, works: false, summary: summary, reason: failed.1)
            }
            return DriverStatus(name: name, works: true, summary: summary, reason: works)
        }
        switch name {
        case "overlay":
            return status("kernel overlayfs: lower layers stacked read-only under one upper directory", [
                (Mounts.kernelHas("overlay"), "this kernel has no overlay filesystem"),
                (root, "mounting overlayfs needs root"),
            ], works: "kernel overlayfs, whiteouts as 0/0 character devices")
        case "fuse-overlayfs":
            return status("overlayfs in user space through FUSE", [
                (Command.which("fuse-overlayfs") != nil, "fuse-overlayfs is not installed (scripts/install-deps.sh installs it)"),
                (Mounts.fuseUsable, "/dev/fuse is missing or not usable"),
            ], works: "fuse-overlayfs \(Command.which("fuse-overlayfs") ?? "")")
        case "btrfs":
            return status("btrfs subvolume snapshots, on a loop-mounted btrfs file when the store is not on btrfs", [
                (Mounts.kernelHas("btrfs"), "this kernel has no btrfs"),
                (Command.which("btrfs") != nil && Command.which("mkfs.btrfs") != nil, "btrfs-progs is not installed (scripts/install-deps.sh installs it)"),
                (root, "creating subvolumes and loop devices needs root"),
                (access("/dev/loop-control", R_OK | W_OK) == 0, "/dev/loop-control is missing: no loop devices"),
            ], works: "snapshots of subvolumes; the diff is found by comparing with the parent snapshot")
        case "vfs":
            return status("a full copy of the parent per layer, no copy-on-write", [],
                          works: "plain directories; the diff is found by comparing with the parent")
        case "unionfs":
            return status("unionfs-fuse in copy-on-write mode: branch-based union in user space, the nearest to aufs here (not aufs)", [
                (Command.which("unionfs") != nil, "unionfs-fuse is not installed (scripts/install-deps.sh installs it)"),
                (Mounts.fuseUsable, "/dev/fuse is missing or not usable"),
            ], works: "unionfs-fuse -o cow; whiteouts as .unionfs-fuse/NAME_HIDDEN~, written to the layer as .wh.NAME; no extended attributes")
        case "aufs":
            let has = Mounts.kernelHas("aufs")
            return status("aufs, the union filesystem of early Docker", [
                (has, "this kernel (\(kernelRelease)) has no aufs: it was never merged into mainline Linux; use overlay (or fuse-overlayfs, btrfs, or unionfs for an aufs-like union in user space) instead"),
                (root, "mounting aufs needs root"),
            ], works: "kernel aufs, whiteouts as .wh.NAME")
        default:
            return DriverStatus(name: name, works: false, summary: "unknown", reason: "no such driver; known: \(names.joined(separator: ", "))")
        }
    }

    static var kernelRelease: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: u.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    }
}

/// Which folder a layer made by `StorageDriver.referenceTree` stands on, as `LAYER/tree` records
/// it: its path, and the folder's identity (device, inode and ctime). A folder removed and made
/// again at the same path (a base root rebuilt, or pruned and made again) has another identity.
struct TreeReference: Equatable {
    var path: String
    /// "DEVICE INODE CTIME.NANOSECONDS", as written and compared, never parsed.
    var identity: String

    init(_ path: String) throws {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let st = try FileSystem.statFollowing(absolute)
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw HostError.io(path: absolute, message: "not a folder") }
        self.path = absolute
        identity = "\(st.st_dev) \(st.st_ino) \(st.st_ctim.tv_sec).\(st.st_ctim.tv_nsec)"
    }

    private init(path: String, identity: String) { (self.path, self.identity) = (path, identity) }

    static func file(_ layerDir: String) -> String { layerDir + "/tree" }

    /// The record of a layer made by reference; nil for any other layer. A record cut short
    /// names no identity, which no folder has.
    static func read(_ layerDir: String) -> TreeReference? {
        guard let text = try? String(contentsOfFile: file(layerDir), encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return TreeReference(path: lines[0], identity: lines.count > 1 ? lines[1] : "")
    }

    func write(_ layerDir: String) throws {
        try Data("\(path)\n\(identity)\n".utf8).write(to: URL(fileURLWithPath: TreeReference.file(layerDir)))
    }

    /// Whether the folder at `path` is still the one recorded.
    var isCurrent: Bool { (try? TreeReference(path)) == self }
}
