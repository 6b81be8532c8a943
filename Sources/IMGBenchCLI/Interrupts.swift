import Dispatch
import Foundation

/// Ctrl-C and SIGTERM while a command writes: the half-written files it registered are removed
/// before the process exits with 128 + the signal, so nothing incomplete is left behind.
enum Interrupts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var paths: [String] = []
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) private static var handlers: [() -> Void] = []

    /// Runs `handler` (releasing mounts, daemons) when interrupted, before the files are removed.
    static func onInterrupt(_ handler: @escaping () -> Void) {
        install()
        lock.withLock { handlers.append(handler) }
    }

    /// Runs `body` with `path` registered for removal on interruption.
    static func removing<T>(_ path: String, _ body: () throws -> T) rethrows -> T {
        install()
        lock.withLock { paths.append(path) }
        defer { lock.withLock { paths.removeAll { $0 == path } } }
        return try body()
    }

    private static func install() {
        lock.withLock {
            guard sources.isEmpty else { return }
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                s.setEventHandler {
                    for h in lock.withLock({ handlers }) { h() }
                    let pending = lock.withLock { paths }
                    for p in pending { try? FileManager.default.removeItem(atPath: p) }
                    FileHandle.standardError.write(Data("\nimgbench: interrupted; released what was mounted or started\(pending.isEmpty ? "" : "; removed " + pending.joined(separator: ", "))\n".utf8))
                    exit(128 + sig)
                }
                s.resume()
                sources.append(s)
            }
        }
    }
}
