import Dispatch
import Foundation
import Host
import Layers
import OCI

/// Unpacks the image's layers into the runtime bundle's `rootfs` while the build goes on, so
/// that the bundle is not made from the compressed blobs again after the last step.
///
/// Layers are applied in order on one background queue. A layer the build captures now is
/// applied from its uncompressed tar as the capture writes it (a pipe fed by the capture's tee),
/// so it is never decompressed; a layer from the cache is applied from its blob. Nothing starts
/// until `start()`, which the builder calls at once when the output folder has no bundle to keep,
/// else the container pass at its first cache miss: a build whose every step is a hit may keep
/// the previous build's bundle instead (see `OutputStamps`), and then no work was wasted.
final class BundleStager: @unchecked Sendable {
    let bundle: String
    var rootfs: String { bundle + "/rootfs" }
    private let queue = DispatchQueue(label: "imgbench.bundle")
    private let lock = NSLock()
    private var waiting: [Job] = []
    private var started = false
    private var failure: Error?
    /// Set on Ctrl-C: the running apply stops at its next entry, and nothing more is written.
    private var cancelled = false
    private let idle = DispatchGroup()
    private var cleanupID: Int?
    /// Where the listings of the layers it applies from a capture are kept
    /// (`LayerListingCache`), so that the report's wasted bytes do not read those layers again;
    /// nil: not kept.
    var listings: String?

    /// A piece of work, and what to do instead once an earlier one has failed.
    struct Job: Sendable {
        var run: @Sendable () throws -> Void
        var skip: @Sendable () -> Void = {}
    }

    init(bundle: String) {
        self.bundle = bundle
        // On Ctrl-C, before the partial output folder is removed: stop writing into it.
        cleanupID = Cleanup.register("stop unpacking the runtime bundle") { [weak self] in self?.cancel() }
    }

    deinit { if let id = cleanupID { Cleanup.unregister(id) } }

    var isCancelled: Bool { lock.withLock { cancelled } }

    /// What an apply asks before each entry.
    var stopCheck: @Sendable () -> Bool { { [self] in isCancelled } }

    /// Stops the work: the running apply ends at its next entry, later ones do not start. Waits
    /// (a few seconds at most) for the queue to stop writing.
    func cancel() {
        lock.withLock { cancelled = true; waiting = [] }
        _ = idle.wait(timeout: .now() + 5)
    }

    var isStarted: Bool { lock.withLock { started } }

    /// Starts applying what is queued, and from now on each layer as it comes.
    func start() {
        let root = rootfs, bundle = self.bundle
        lock.withLock {
            guard !started else { return }
            started = true
            // The bundle is root's alone: its rootfs may hold a base image's device nodes.
            submit(Job(run: {
                try FileSystem.makeDirectories(bundle, mode: 0o700)
                try FileSystem.makeDirectories(root)
            }))
            for j in waiting { submit(j) }
            waiting = []
        }
    }

    /// A layer blob (from the cache), applied after the layers before it.
    func add(blob: String) {
        let root = rootfs
        let stop = stopCheck
        let job = Job(run: { try LayerApply.apply(layer: blob, to: root, stop: stop) })
        lock.withLock { started ? submit(job) : waiting.append(job) }
    }

    /// Runs `capture` with a sink that takes the uncompressed tar of the layer it writes; the
    /// tar is applied as it arrives (after the layers before it), and its listing is kept under
    /// the digest `digest` gives of the capture's result. Starts the stager.
    func capturing<T>(_ name: String, digest: (T) -> Digest, _ capture: (ByteSink) throws -> T) throws -> T {
        start()
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw HostError.io(path: bundle, message: "pipe: \(String(cString: strerror(errno)))") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let readEnd = fds[0], root = rootfs, label = "the tar stream of \(name)"
        let sink = DescriptorSink(fd: fds[1], name: label)
        // The writer must never block on a pipe nobody reads: a stream that is not applied
        // (an earlier layer failed) is read to its end and dropped.
        let listing = listings.map(ListingHandoff.init(folder:))
        lock.withLock {
            let stop = stopCheck
            submit(Job(run: {
                let applied = try LayerApply.apply(stream: readEnd, named: label, to: root, stop: stop, listing: listing != nil)
                listing?.applied(applied.listing ?? [])
            }, skip: { LayerApply.discard(stream: readEnd) }))
        }
        defer { try? sink.finish() }
        let result = try capture(sink)
        listing?.captured(digest(result))
        return result
    }

    /// A captured layer's listing, kept once both halves are known: the entries (from the
    /// apply, on the stager's queue) and the blob's digest (from the capture), whichever comes
    /// second. A capture that fails gives no digest, and nothing is kept.
    final class ListingHandoff: @unchecked Sendable {
        let folder: String
        private let lock = NSLock()
        private var entries: [LayerEntry]?
        private var digest: Digest?

        init(folder: String) { self.folder = folder }

        func applied(_ e: [LayerEntry]) { keep(lock.withLock { entries = e; return digest.map { ($0, e) } }) }

        func captured(_ d: Digest) { keep(lock.withLock { digest = d; return entries.map { (d, $0) } }) }

        private func keep(_ both: (Digest, [LayerEntry])?) {
            if let (d, e) = both { LayerListingCache.store(e, digest: d, cache: folder) }
        }
    }

    /// Waits for every layer to be applied; throws the first failure.
    func finish() throws {
        start()
        queue.sync {}
        if let f = lock.withLock({ failure }) { throw f }
    }

    /// Drops what is queued and not yet running (the bundle is not wanted).
    func abandon() {
        lock.withLock { waiting = [] }
    }

    /// Called with the lock held.
    private func submit(_ job: Job) {
        idle.enter()
        queue.async { [self] in
            defer { idle.leave() }
            if lock.withLock({ failure != nil || cancelled }) {
                job.skip()
                return
            }
            do {
                try job.run()
            } catch {
                lock.withLock { if failure == nil { failure = error } }
            }
        }
    }
}
