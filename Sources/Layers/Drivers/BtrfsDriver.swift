import Foundation
import Host

/// btrfs subvolume snapshots: a layer is a snapshot of its parent's subvolume, so a new writable
/// root costs a few metadata blocks whatever the size of the image. When the store is not on
/// btrfs, the driver makes a sparse file, formats it as btrfs and loop-mounts it, and unmounts it
/// (detaching the loop device) on `close()`, on errors and on Ctrl-C.
///
/// ```
/// btrfs/pool.img            the btrfs file (only when the store is not on btrfs)
/// btrfs/pool/<id>           each layer's subvolume
/// btrfs/layers/<id>/parent  the parent's id
/// ```
/// A snapshot keeps the inode numbers of its source, so the diff is found by comparing a layer
/// with its parent's subvolume, entry by entry, like vfs does with its recorded baseline.
final class BtrfsDriver: StorageDriver {
    let store: String
    let name = "btrfs"
    static let btrfsMagic: Int = 0x9123_683E
    /// Size of the pool file; sparse, so it costs only what is written.
    static let poolSize: UInt64 = 16 << 30
    private(set) var mountedPool = false
    /// Shared by every driver using the pool, exclusive while it is mounted or unmounted: the
    /// last build to close unmounts it, never one while another uses it.
    private var poolLock: FileLock?

    var pool: String { root + "/pool" }
    var image: String { root + "/pool.img" }

    init(store: String) throws {
        self.store = store
        try FileSystem.makeDirectories(store + "/btrfs/layers")
        try FileSystem.makeDirectories(store + "/btrfs/pool")
        let lock = try FileLock(store + "/btrfs/pool.lock", mode: .exclusive)
        defer { try? lock.downgrade(); poolLock = lock }
        if try Mounts.filesystemType(store + "/btrfs") != Self.btrfsMagic && !Mounts.isMounted(pool) {
            if !FileSystem.exists(image) {
                let fd = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw HostError.systemCall(path: image, operation: "create", errno: errno) }
                let r = ftruncate(fd, off_t(Self.poolSize))
                Glibc.close(fd)
                guard r == 0 else { throw HostError.systemCall(path: image, operation: "truncate", errno: errno) }
                do { try Command.output(["mkfs.btrfs", "-q", image]) } catch {
                    unlink(image)
                    throw error
                }
            }
            try Command.output(["mount", "-o", "loop", image, pool])
            Mounts.track(pool)
            mountedPool = true
        }
    }

    func subvolume(_ id: String) -> String { pool + "/" + id }

    func prepare(_ id: String, parent: String?) throws -> String {
        try createLayerDir(id, parent: parent)
        do {
            if let p = parent {
                try Command.output(["btrfs", "subvolume", "snapshot", subvolume(p), subvolume(id)])
            } else {
                try Command.output(["btrfs", "subvolume", "create", subvolume(id)])
            }
        } catch {
            try? FileSystem.removeTree(layerDir(id))
            throw error
        }
        return subvolume(id)
    }

    func diffSource(_ id: String) throws -> DiffSource {
        guard FileSystem.exists(subvolume(id)) else { throw LayersError.layerNotFound(driver: name, layer: id) }
        guard let p = parent(of: id) else { return .tree(subvolume(id)) }
        return .compare(root: subvolume(id), baseline: try Baseline.scan(subvolume(p)))
    }

    func release(_ id: String) throws {}

    func remove(_ id: String) throws {
        if FileSystem.exists(subvolume(id)) { try Command.output(["btrfs", "subvolume", "delete", subvolume(id)]) }
        try FileSystem.removeTree(layerDir(id))
    }

    /// Bytes only this subvolume holds (not shared with its parent), as `btrfs filesystem du` counts them.
    func writableBytes(_ id: String) throws -> UInt64 {
        sync()
        let out = try Command.output(["btrfs", "filesystem", "du", "-s", "--raw", subvolume(id)])
        let lines = out.split(separator: "\n")
        guard lines.count >= 2, let v = lines[1].split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ UInt64($0) }) else {
            throw LayersError.driverFailure(driver: name, layer: id, message: "cannot read btrfs filesystem du: \(out)")
        }
        return v
    }

    /// Unmounts the pool if no other build uses it (the last to close unmounts it).
    func close() throws {
        guard let lock = poolLock else { return }
        poolLock = nil
        defer { lock.unlock() }
        if (mountedPool || Mounts.isMounted(pool)) && lock.tryExclusive() { try Mounts.unmount(pool) }
        mountedPool = false
    }

    deinit { try? close() }
}
