import Foundation
import Host

/// Runs the two sides of a build at the same time: the first on the calling thread, the second on
/// a thread of its own. When one side fails, the other stops before its next step (the step under
/// way ends first, so that its layer or link is whole or gone, as after any failed step), and the
/// failure is what the build reports. `serial` runs the first side, then the second.
///
/// Each side's step timings are its own, but they are taken while the other side used the same
/// machine: the report says so (`totals.sides`), and `--serial` gives one side alone.
final class BuildSides: @unchecked Sendable {
    let serial: Bool

    init(serial: Bool) { self.serial = serial }

    /// Set when a side failed: the other checks it between its steps.
    final class Stop: @unchecked Sendable {
        private let lock = NSLock()
        private var failed = false

        func set() { lock.withLock { failed = true } }

        /// Throws `Stopped` once the other side failed.
        func check() throws {
            if lock.withLock({ failed }) { throw Stopped() }
        }
    }

    /// This side stopped because the other failed: never the error a build reports.
    struct Stopped: Error {}

    /// The second side's work and its result, handed to its thread and back; the thread is
    /// joined before the result is read.
    private final class Handoff<T>: @unchecked Sendable {
        let work: (Stop) throws -> T
        var result: Result<T, Error>?
        init(_ work: @escaping (Stop) throws -> T) { self.work = work }
    }

    func run<A, B>(_ first: (Stop) throws -> A, _ second: @escaping (Stop) throws -> B) throws -> (A, B) {
        let stop = Stop()
        if serial { return (try first(stop), try second(stop)) }
        let handoff = Handoff(second)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            handoff.result = Result { try handoff.work(stop) }
            if case .failure = handoff.result { stop.set() }
            done.signal()
        }
        thread.name = "imgbench vm side"
        thread.stackSize = 8 << 20
        thread.start()
        let a = Result { try first(stop) }
        if case .failure = a { stop.set() }
        done.wait()
        let b = handoff.result!
        // The side that failed first is the one to report: the other only stopped.
        switch (a, b) {
        case let (.success(x), .success(y)): return (x, y)
        case let (.failure(e), _) where !(e is Stopped): throw e
        case let (_, .failure(e)) where !(e is Stopped): throw e
        case let (.failure(e), _), let (_, .failure(e)): throw e
        }
    }
}

/// A side's output with the side's mark at the start of each line, handed on as it comes.
final class SideLines: @unchecked Sendable {
    let prefix: String
    let sink: BuildEvents
    private let lock = NSLock()
    private var atLineStart = true

    init(prefix: String, sink: BuildEvents) {
        self.prefix = prefix
        self.sink = sink
    }

    func add(_ text: String) {
        guard !text.isEmpty else { return }
        let marked: String = lock.withLock {
            var out = ""
            for c in text {
                if atLineStart { out += prefix }
                out.append(c)
                atLineStart = c == "\n"
            }
            return out
        }
        sink.output(marked)
    }
}
