import Foundation

/// For synchronous callers (the build, `imgbench check`): async work waited for on the calling
/// thread.
public enum Blocking {
    /// Runs `body` in a detached task and blocks until it ends; its error is thrown here. Not for
    /// a thread that the task itself needs (call it from the main thread or a thread of one's
    /// own, as synchronous commands and the build run).
    public static func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let outcome = Outcome<T>()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { outcome.set(.success(try await body())) } catch { outcome.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        return try outcome.get()
    }
}

extension RegistryClient {
    /// `using`, from synchronous code (`Blocking.run`).
    public static func blocking<T: Sendable>(_ reference: ImageReference, options: Options,
                                             _ body: @escaping @Sendable (RegistryClient) async throws -> T) throws -> T {
        try Blocking.run { try await using(reference, options: options, body) }
    }
}

/// A result handed from a task to the thread that waits for it.
final class Outcome<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<T, Error>?

    func set(_ r: Result<T, Error>) { lock.withLock { result = r } }

    func get() throws -> T {
        guard let r = lock.withLock({ result }) else { preconditionFailure("waited for a task that did not finish") }
        return try r.get()
    }
}
