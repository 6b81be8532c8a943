import Foundation
import Host
import Testing
import TestSupport

/// flock(2) locks as the build cache uses them: shared with shared, exclusive alone, dropped with
/// the holder, and never held on a lock file that was removed meanwhile.
@Suite struct FileLockTests {
    @Test func sharedLocksShareAndAnExclusiveOneWaitsForThemAll() throws {
        let dir = try TempDir("lock")
        let path = dir.file("entry.lock")
        let a = try FileLock(path, mode: .shared), b = try FileLock(path, mode: .shared)
        #expect(FileLock(trying: path, mode: .exclusive) == nil, "an exclusive lock beside two shared ones")
        a.unlock()
        #expect(FileLock(trying: path, mode: .exclusive) == nil, "an exclusive lock beside a shared one")
        b.unlock()
        let x = try #require(FileLock(trying: path, mode: .exclusive))
        #expect(FileLock(trying: path, mode: .shared) == nil, "a shared lock beside an exclusive one")
        try x.downgrade()
        #expect(FileLock(trying: path, mode: .shared) != nil, "a downgraded lock does not share")
    }

    @Test func theLastSharedHolderMayTakeItExclusively() throws {
        let dir = try TempDir("lock")
        let path = dir.file("pool.lock")
        let a = try FileLock(path, mode: .shared), b = try FileLock(path, mode: .shared)
        #expect(!a.tryExclusive(), "made exclusive while another holds it shared")
        #expect(b.tryExclusive(), "the last holder could not make it exclusive")
    }

    @Test func aWaiterOnARemovedLockFileTakesTheNewOne() throws {
        let dir = try TempDir("lock")
        let path = dir.file("entry.lock")
        let remover = try FileLock(path, mode: .exclusive)
        let waited = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var waiter: FileLock?
        let thread = Thread {
            waiter = try? FileLock(path, mode: .exclusive) { _ in waited.signal() }
        }
        thread.start()
        #expect(waited.wait(timeout: .now() + 10) == .success, "the second lock did not wait")
        // As prune does: the entry and its lock file removed while the lock is held.
        unlink(path)
        remover.unlock()
        let deadline = Date().addingTimeInterval(10)
        while waiter == nil && Date() < deadline { usleep(10_000) }
        let held = try #require(waiter, "the waiter never got the lock")
        var st = stat()
        #expect(stat(held.path, &st) == 0, "the waiter holds a lock on a removed file")
        #expect(FileLock(trying: path, mode: .exclusive) == nil, "another took the lock the waiter holds")
    }

    @Test func aLockDiesWithItsProcess() throws {
        let dir = try TempDir("lock")
        let path = dir.file("entry.lock")
        // A child takes the lock on its descriptor 9 (flock(1)), becomes `sleep` holding it, and
        // is killed with SIGKILL.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sh")
        child.arguments = ["-c", "exec 9>\"$0\" && flock 9 && exec sleep 30", path]
        try child.run()
        let deadline = Date().addingTimeInterval(10)
        while FileLock(trying: path, mode: .shared) != nil && Date() < deadline { usleep(20_000) }
        #expect(FileLock(trying: path, mode: .shared) == nil, "the child's exclusive lock never showed")
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        let later = Date().addingTimeInterval(10)
        while FileLock(trying: path, mode: .exclusive) == nil && Date() < later { usleep(20_000) }
        #expect(FileLock(trying: path, mode: .exclusive) != nil, "the lock outlived its holder")
    }
}
