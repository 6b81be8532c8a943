import Foundation
import Host

/// The build cache: complete entries only, each made once however many builds run at once.
///
/// ```
/// CACHE/bases/NAME/root                  a base root (debian: by the base's key; oci-HEX: an image unpacked)
/// CACHE/bases/registry-HEX/layout       a registry base pulled by manifest digest: an OCI layout tagged `base`
/// CACHE/bases/NAME.lock
/// CACHE/containers/DRIVER/layers/KEY     a driver's layer of step KEY (of an OCI base layer: its chain ID)
/// CACHE/containers/layers/KEY.json       its record: the blob's descriptor and diff ID (written last)
/// CACHE/containers/layers/KEY.lock
/// CACHE/containers/blobs/sha256/HEX      layer blobs; CACHE/containers/blobs.lock
/// CACHE/vm/SETTINGS/KEY.qcow2            a chain link, backed by its parent's link
/// CACHE/vm/SETTINGS/KEY.boot/            the boot files of a finalised chain
/// CACHE/vm/SETTINGS/KEY.json             its record: the digests of the link and boot files (written last)
/// CACHE/vm/SETTINGS/KEY.lock
/// CACHE/tmp/vm-PID/, tmp/vm-PID.lock     a running build's scratch (mount points, FUSE exports)
/// ```
///
/// Locks are flock(2) (`FileLock`): the kernel drops them when a process dies, SIGKILL included.
/// - `ENTRY.lock`, exclusive: held by the build that makes the entry, from the check that finds
///   it missing or bad until it is complete: for a base root, mmdebstrap or the unpacking; for a
///   container layer, the driver's prepare, the step's RUN or COPY in it, the capture and the
///   record (two builds never share a writable layer); for a VM link, the overlay, the step on it
///   and the record. A leftover of a dead maker (`.partial`, a driver layer without its record)
///   is removed once the lock is taken. A second build that needs the entry waits, checks again,
///   and uses what the first made: a cache hit. `cache prune` and `cache verify --repair` hold
///   it while they remove the entry (and its lock file, last).
/// - `ENTRY.lock`, shared: held by every build that uses the entry, from its check until the build
///   ends (the maker keeps its lock, downgraded), so that nothing removes what a running build
///   reads: a base root, a lower layer of its overlays, a backing file of its links.
/// - `containers/blobs.lock`, shared while a layer's blob is written and recorded; `cache prune`
///   takes it exclusively while it removes blobs that no record refers to.
/// - `tmp/vm-PID.lock`, exclusive for a VM pass's life: a scratch folder whose lock is free
///   belongs to a dead build; its mounts, loop devices and daemons are released and it is removed.
///
/// Every entry is checked when it is read (a record written last, blobs and links by digest); a
/// bad entry is made again. A lock file's modification time is its entry's last use, and its
/// lines name the recipes that used it (`imgbench cache du`, `prune --keep-days`).
public final class BuildCache: @unchecked Sendable {
    public let root: String
    let recipe: String
    let events: BuildEvents?
    private var held: [String: FileLock] = [:]
    /// Guards `held`: the two sides of a build use the cache at the same time.
    private let heldLock = NSLock()

    /// What a check of an entry found.
    enum Check: Equatable {
        case valid
        case missing
        case bad(String)
    }

    /// `root` is made absolute: the mounts made below it are found by their absolute paths.
    public init(root: String, recipe: String, events: BuildEvents?) throws {
        self.root = LexicalPath.absolute(root)
        self.recipe = recipe
        self.events = events
        try BuildCache.prepare(root)
    }

    /// Makes the cache folder, and keeps the folders that hold roots (the bases, the container
    /// store, the scratch mounts of VM steps, the measurements' roots) to root alone: a base
    /// image's layer may hold device nodes (`b 253,0 0666`), which no other user may reach.
    static func prepare(_ cache: String) throws {
        try FileSystem.makeDirectories(cache)
        for sub in ["bases", "containers", "tmp", "measure"] {
            let dir = "\(cache)/\(sub)"
            try FileSystem.makeDirectories(dir, mode: 0o700)
            guard chmod(dir, 0o700) == 0 else { throw HostError.systemCall(path: dir, operation: "chmod", errno: errno) }
        }
    }

    /// The entry guarded by `lock`: used when `check` finds it valid (a hit, true), else made by
    /// `make` under the exclusive lock, after another check (another build may have made it
    /// meanwhile). `make` removes what a dead maker left. Either way the build then holds the
    /// lock shared until `close()`. An entry this build already holds (used or made, as the stages
    /// of a multi-stage recipe share their base) is used as it is, `noCache` or not: making it
    /// again would pull it from under what this build stacked on it.
    func entry(_ what: String, lock: String, noCache: Bool = false, check: () -> Check, make: () throws -> Void) throws -> Bool {
        if heldLock.withLock({ held[lock] != nil }) { return true }
        if !noCache {
            let shared = try FileLock(lock, mode: .shared, onWait: { _ in self.events?.note("cache: waiting for another build making \(what)") })
            if check() == .valid { return use(shared, hit: true) }
            shared.unlock()
        }
        heldLock.withLock { held[lock] = nil }
        let exclusive = try FileLock(lock, mode: .exclusive, onWait: { _ in self.events?.note("cache: waiting for another build using or making \(what)") })
        if !noCache {
            switch check() {
            case .valid:
                try exclusive.downgrade()
                return use(exclusive, hit: true)
            case let .bad(reason):
                events?.note("cache: \(what) is not usable (\(reason)); making it again")
            case .missing:
                break
            }
        }
        try make()
        try exclusive.downgrade()
        return use(exclusive, hit: false)
    }

    private func use(_ l: FileLock, hit: Bool) -> Bool {
        l.touch()
        BuildCache.addUser(recipe, to: l.path)
        heldLock.withLock { held[l.path] = l }
        return hit
    }

    /// Runs `body` with a shared lock on `lock` (the blob store's, while a blob is written and
    /// recorded).
    func sharing<T>(_ lock: String, _ body: () throws -> T) throws -> T {
        let l = try FileLock(lock, mode: .shared, onWait: { _ in self.events?.note("cache: waiting for cache prune to finish with the blobs") })
        defer { l.unlock() }
        return try body()
    }

    /// Releases every lock this build holds.
    public func close() {
        let all = heldLock.withLock { defer { held = [:] }; return Array(held.values) }
        for l in all { l.unlock() }
    }

    /// Records that `recipe` used the entry: one line per recipe in its lock file.
    static func addUser(_ recipe: String, to lock: String) {
        let line = recipe.replacingOccurrences(of: "\n", with: " ")
        if users(of: lock).contains(line) { return }
        let fd = open(lock, O_WRONLY | O_APPEND | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { Glibc.close(fd) }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// The recipes that used an entry.
    static func users(of lock: String) -> [String] {
        ((try? String(contentsOfFile: lock, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Runs `body`, which makes `partial`, with `partial` removed first (a dead maker's leftover),
    /// on failure, and on SIGINT/SIGTERM (`Cleanup`, which runs after the unmounts registered
    /// later).
    static func makingPartial<T>(_ partial: String, _ body: () throws -> T) throws -> T {
        try FileSystem.removeTree(partial)
        let token = Cleanup.register("remove \(partial)") { try? FileSystem.removeTree(partial) }
        defer { Cleanup.unregister(token) }
        do {
            return try body()
        } catch {
            try? FileSystem.removeTree(partial)
            throw error
        }
    }
}
