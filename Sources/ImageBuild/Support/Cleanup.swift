import Foundation

/// What a build has mounted or started and must release: undone in reverse order on success,
/// on failure, and from the signal handler on Ctrl-C.
public final class Cleanup: @unchecked Sendable {
    public static let shared = Cleanup()

    private let lock = NSLock()
    private var actions: [(id: Int, label: String, run: () -> Void)] = []
    private var nextID = 0

    public struct Token: Sendable { let id: Int }

    /// Registers an undo action; returns a token to run it (and forget it) later.
    public func push(_ label: String, _ action: @escaping () -> Void) -> Token {
        lock.lock()
        defer { lock.unlock() }
        nextID += 1
        actions.append((nextID, label, action))
        return Token(id: nextID)
    }

    /// Runs one action now and forgets it.
    public func run(_ token: Token) {
        lock.lock()
        let a = actions.firstIndex { $0.id == token.id }.map { actions.remove(at: $0) }
        lock.unlock()
        a?.run()
    }

    /// Runs every pending action, newest first (interruption).
    public func runAll() {
        while true {
            lock.lock()
            let a = actions.popLast()
            lock.unlock()
            guard let a else { return }
            a.run()
        }
    }

    public var pending: [String] {
        lock.lock()
        defer { lock.unlock() }
        return actions.map(\.label)
    }
}
