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
    /// tar is applied as it arrives (after the layers before it). Starts the stager.
    func capturing<T>(_ name: String, _ capture: (ByteSink) throws -> T) throws -> T {
        start()
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw HostError.io(path: bundle, message: "pipe: \(String(cString: strerror(errno)))") }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        let readEnd = fds[0], root = rootfs, label = "the tar stream of \(name)"
        let sink = DescriptorSink(fd: fds[1], name: label)
        // The writer must never block on a pipe nobody reads: a stream that is not applied
        // (an earlier layer failed) is read to its end and dropped.
        lock.withLock {
            let stop = stopCheck
            submit(Job(run: { try LayerApply.apply(stream: readEnd, named: label, to: root, stop: stop) },
                       skip: { LayerApply.discard(stream: readEnd) }))
        }
        defer { try? sink.finish() }
        return try capture(sink)
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
