import Dispatch
import Foundation

/// Ctrl-C and SIGTERM while a command writes: the half-written files it registered are removed,
/// and the mounts, loop devices, FUSE daemons and programs registered with `Cleanup` are released,
/// before the process exits with 128 + the signal, so nothing incomplete or mounted is left behind.
public enum Interrupts {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var paths: [String] = []
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []
    nonisolated(unsafe) private static var interrupted = false

    /// Runs `body` with `path` registered for removal on interruption.
    public static func removing<T>(_ path: String, _ body: () throws -> T) rethrows -> T {
        install()
        lock.withLock { paths.append(path) }
        defer { lock.withLock { paths.removeAll { $0 == path } } }
        return try finishing(body)
    }

    /// Runs `body` with everything registered with `Cleanup` released on interruption.
    public static func releasing<T>(_ body: () throws -> T) rethrows -> T {
        install()
        return try finishing(body)
    }

    /// `releasing` for an async body (a push or a pull).
    public static func releasing<T>(_ body: () async throws -> T) async rethrows -> T {
        install()
        do {
            let result = try await body()
            waitIfInterrupted()
            return result
        } catch {
            waitIfInterrupted()
            throw error
        }
    }

    /// Runs `body`; if an interruption is being handled when it ends (typically it failed because
    /// the handler stopped the program it ran), waits for the handler, which releases everything
    /// and exits: the command must not exit first, with cleanup half done.
    private static func finishing<T>(_ body: () throws -> T) rethrows -> T {
        let result: T
        do {
            result = try body()
        } catch {
            waitIfInterrupted()
            throw error
        }
        waitIfInterrupted()
        return result
    }

    /// Removes a half-written output, and says so, or why not: the command that wrote it may be
    /// removing it at the same time (its own failure path), which `removeTree` allows for.
    private static func remove(_ path: String) -> String {
        do {
            try FileSystem.removeTree(path)
            return "removed \(path)"
        } catch {
            return "could not remove \(path): \(error)"
        }
    }

    private static func waitIfInterrupted() {
        guard lock.withLock({ interrupted }) else { return }
        while true { sleep(60) }
    }

    private static func install() {
        lock.withLock {
            guard sources.isEmpty else { return }
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                s.setEventHandler {
                    let pending = lock.withLock { interrupted = true; return paths }
                    // What writes, mounts or runs is stopped and released first, so that nothing
                    // writes into a half-written output while it is removed.
                    let released = Cleanup.runAllAndClose()
                    let undone = pending.map(remove) + released.map { "released \($0)" }
                    FileHandle.standardError.write(Data("\nimgbench: interrupted; \(undone.isEmpty ? "nothing to undo" : undone.joined(separator: ", "))\n".utf8))
                    exit(128 + sig)
                }
                s.resume()
                sources.append(s)
            }
        }
    }
}
