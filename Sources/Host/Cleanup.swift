import Foundation

/// What must be undone if the process is interrupted: mounts, loop devices, FUSE daemons and
/// half-written files. Each owner registers an action and unregisters it when it has undone the
/// thing itself; `Cleanup.runAll()` (called by the command line on Ctrl-C) undoes what is left,
/// newest first.
public enum Cleanup {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var actions: [(id: Int, label: String, run: () -> Void)] = []
    nonisolated(unsafe) private static var next = 0
    /// How many `run(where:)` calls are under way, with a condition to wait for none.
    private static let settled = NSCondition()
    nonisolated(unsafe) private static var running = 0

    /// Set by `runAllAndClose`: the process is about to exit.
    nonisolated(unsafe) private static var closed = false

    /// Registers `run`. Once `runAllAndClose` has begun, an action registered by another thread
    /// (a program it started while the interruption was being handled) is run at once instead,
    /// so that it is not left behind; what a cleanup action itself starts (`runc delete`) is
    /// registered as usual, or it would be stopped before it did its work.
    @discardableResult
    public static func register(_ label: String, _ run: @escaping () -> Void) -> Int {
        let cleaning = Thread.current.threadDictionary[cleaningKey] != nil
        let (id, now) = lock.withLock { () -> (Int, Bool) in
            next += 1
            let now = closed && !cleaning
            if !now { actions.append((next, label, run)) }
            return (next, now)
        }
        if now { whileCleaning(run) }
        return id
    }

    private static let cleaningKey = "imgbench.cleanup.cleaning"

    /// Runs `body` with this thread marked as running a cleanup action.
    private static func whileCleaning<T>(_ body: () -> T) -> T {
        let dictionary = Thread.current.threadDictionary
        let outer = dictionary[cleaningKey] != nil
        dictionary[cleaningKey] = true
        defer { if !outer { dictionary.removeObject(forKey: cleaningKey) } }
        return body()
    }

    public static func unregister(_ id: Int) {
        lock.withLock { actions.removeAll { $0.id == id } }
    }

    /// Runs one registered action now and unregisters it (nothing when it already ran).
    public static func run(_ id: Int) {
        let a = lock.withLock { () -> (() -> Void)? in
            guard let i = actions.firstIndex(where: { $0.id == id }) else { return nil }
            return actions.remove(at: i).run
        }
        a?()
    }

    /// Runs every registered action, newest first, and returns their labels.
    @discardableResult
    public static func runAll() -> [String] { run { _ in true } }

    /// `runAll` for a process about to exit on an interruption: what registers afterwards is
    /// undone at once rather than left behind.
    @discardableResult
    public static func runAllAndClose() -> [String] {
        lock.withLock { closed = true }
        return whileCleaning { runAll() }
    }

    /// Runs the registered actions whose label matches, newest first, and returns their labels.
    @discardableResult
    static func run(where matches: (String) -> Bool) -> [String] {
        settled.withLock { running += 1 }
        defer {
            settled.withLock {
                running -= 1
                settled.broadcast()
            }
        }
        let pending = lock.withLock { () -> [(id: Int, label: String, run: () -> Void)] in
            let a = actions.filter { matches($0.label) }
            actions.removeAll { matches($0.label) }
            return a
        }
        for a in pending.reversed() { a.run() }
        return pending.reversed().map(\.label)
    }

    /// Waits until no `runAll()` is under way. A thread whose work was stopped by one of the
    /// actions (a program killed on Ctrl-C) waits here before it unwinds, so that it does not
    /// remove folders or exit while the other actions still release mounts and daemons.
    public static func waitForRunAll() {
        settled.withLock {
            while running > 0 { settled.wait() }
        }
    }
}
