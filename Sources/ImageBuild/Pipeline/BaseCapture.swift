import Foundation

/// The base layer of a container side, made on a thread of its own (`ContainerPass.startBase`):
/// it is `ready` once its driver layer is whole, so that the first steps can run on it, and
/// finished once its blob is captured, compressed and recorded (or the making failed).
final class BaseCapture: @unchecked Sendable {
    let key: String
    let start: Date
    let rootSeconds: Double
    private let lock = NSLock()
    private let readySignal = DispatchSemaphore(value: 0)
    private let doneSignal = DispatchSemaphore(value: 0)
    private var signalledReady = false
    private var result: Result<(record: ContainerPass.LayerRecord, hit: Bool), Error>?
    /// When the driver layer was whole, or the making ended without it (a layer from a cache).
    private var readyAt: Date?

    init(key: String, start: Date, rootSeconds: Double) {
        self.key = key
        self.start = start
        self.rootSeconds = rootSeconds
    }

    /// The driver layer is whole: the steps may start on it.
    func ready() { signalReady {} }

    /// The making ended: ready too, if it never got that far.
    func finish(_ r: Result<(record: ContainerPass.LayerRecord, hit: Bool), Error>) {
        signalReady { result = r }
        doneSignal.signal()
    }

    /// Runs `update` under the lock, and marks the side ready (its time kept) if it was not yet.
    private func signalReady(_ update: () -> Void) {
        let first = lock.withLock {
            update()
            defer { signalledReady = true }
            if !signalledReady { readyAt = Date() }
            return !signalledReady
        }
        if first { readySignal.signal() }
    }

    func waitReady() { readySignal.wait() }

    /// The bytes of the layer's tar whose members were compressed while mmdebstrap made the root.
    var earlyTaken: Int64? { lock.withLock { taken } }
    private var taken: Int64?
    func tookEarly(_ bytes: Int64) { lock.withLock { taken = bytes } }

    /// The capture's failure after `ready`, while steps may run on the driver layer.
    private var capturedFailure: Error?
    private let releaseSignal = DispatchSemaphore(value: 0)

    /// Called on the base's thread when the making fails: after `ready`, the steps may be running
    /// on the driver layer, so the thread waits here, holding the entry's lock (no other build
    /// removes the layer as a leftover), until `release()`. Before `ready`, no step started.
    func failing(_ error: Error) {
        let hold = lock.withLock {
            if signalledReady { capturedFailure = error }
            return signalledReady
        }
        if hold { releaseSignal.wait() }
    }

    /// The steps are done with the driver layer: a failed making may let its lock go.
    func release() { releaseSignal.signal() }

    /// Throws the capture's failure once it has failed: the steps stop before their next one.
    func check() throws {
        if let e = lock.withLock({ capturedFailure }) { throw e }
    }

    /// The record, when the making has ended well.
    var record: ContainerPass.LayerRecord? { lock.withLock { try? result?.get().record } }

    /// The failure, when the making has ended so.
    var failure: Error? {
        lock.withLock {
            if case let .failure(e) = result { return e }
            return nil
        }
    }

    /// What the side waited for: the time until ready, plus the base root's time.
    var readySeconds: Double {
        rootSeconds + lock.withLock { (readyAt ?? Date()).timeIntervalSince(start) }
    }

    /// Waits for the making to end; its record and whether it was a cache hit.
    func wait() throws -> (record: ContainerPass.LayerRecord, hit: Bool) {
        doneSignal.wait()
        doneSignal.signal()
        return try lock.withLock { result! }.get()
    }
}
