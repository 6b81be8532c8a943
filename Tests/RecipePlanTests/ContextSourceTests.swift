import Foundation
import Host
@testable import RecipePlan
import Testing
import TestSupport

// COPY/ADD sources never leave the build context through a symlink, and a FIFO or a device in
// the context gets a key from what it is, without being read.

@Suite struct ContextSourceTests {
    let dir: TempDir
    let outside: TempDir
    var context: String { dir.path }

    init() throws {
        dir = try TempDir("context")
        outside = try TempDir("outside")
        try write(outside.file("a.txt"), "secret a")
        try write(outside.file("b.txt"), "secret b")
        _ = try dir.sub("real/deeper")
        try write(dir.file("real/a.txt"), "a")
        try write(dir.file("real/deeper/b.txt"), "b")
        symlink("/", dir.file("rootlink"))
        symlink(outside.path, dir.file("linkdir"))
        symlink("real", dir.file("alias"))                  // relative, inside
        symlink(dir.file("real"), dir.file("absalias"))     // absolute, still inside
        symlink("real/../../../../../../../..", dir.file("climb"))  // leaves through .. (to /)
    }

    /// A recipe whose line 2 is `instruction`, loaded and planned.
    func plan(_ instruction: String) throws -> BuildPlan {
        try write(dir.file("Containerfile"), "FROM scratch\n\(instruction)\n")
        return try BuildPlan.make(try RecipeParser.load(context), baseKey: "scratch")
    }

    func refusal(_ instruction: String) -> RecipeError? {
        do {
            _ = try plan(instruction)
            return nil
        } catch let e as RecipeError {
            return e
        } catch {
            return RecipeError(SourceLocation(file: "", line: 0, column: 0), "not a RecipeError: \(error)")
        }
    }

    @Test func aSymlinkToSlashIsRefusedWithItsLine() throws {
        let e = try #require(refusal("COPY rootlink/etc/passwd /stolen"))
        #expect(e.location.line == 2)
        #expect(e.message.contains("rootlink/etc/passwd") && e.message.contains("leaves the build context"), "\(e)")
        #expect(e.description.hasPrefix(e.location.description))
    }

    @Test func aGlobThroughAnOutsideFolderIsRefused() throws {
        for instruction in ["COPY linkdir/* /z/", "COPY linkdir/a.txt /z/", "ADD linkdir/*.txt /z/", "COPY climb/etc/passwd /z"] {
            let e = try #require(refusal(instruction), "\(instruction) was accepted")
            #expect(e.location.line == 2 && e.message.contains("leaves the build context"), "\(e)")
        }
    }

    @Test func aSourceThatClimbsOutOfTheContextIsRefusedWithItsLine() throws {
        // `x` is in the context too: these were clamped to it and copied it.
        try write(dir.file("x"), "inside")
        for instruction in ["COPY ../x /y", "COPY /../x /y", "ADD real/../../x /y", "COPY [\"./../x\", \"/y\"]"] {
            let e = try #require(refusal(instruction), "\(instruction) was accepted")
            #expect(e.location.line == 2 && e.message.contains("outside the build context"), "\(e)")
        }
        #expect(try plan("COPY real/../x /y").steps[0].sources == ["x"])
    }

    @Test func symlinksThatStayInsideAreFollowed() throws {
        let copy = ContextCopy(context: context, ignore: ContextIgnore(patterns: []), location: SourceLocation(file: "C", line: 2, column: 1))
        #expect(try copy.expand(["alias/a.txt"]) == ["alias/a.txt"])
        #expect(try copy.expand(["absalias/*"]) == ["absalias/a.txt", "absalias/deeper"])
        #expect(try copy.expand(["alias/deeper/b.txt"]) == ["alias/deeper/b.txt"])
        // The last component is copied as a symlink, not read: fine even when it points out.
        #expect(try copy.expand(["rootlink", "linkdir"]) == ["rootlink", "linkdir"])
        _ = try plan("COPY rootlink alias/a.txt /keep/")
    }

    @Test func aFIFOGetsAKeyWithoutBeingRead() throws {
        _ = try dir.sub("app")
        try write(dir.file("app/x.txt"), "x")
        #expect(mkfifo(dir.file("app/pipe"), 0o644) == 0)
        let parts = try withTimeLimit(unblocking: dir.file("app/pipe")) {
            try BuildPlan.contentDigests(["app"], context: context, ignore: ContextIgnore(patterns: []))
        }
        #expect(parts.contains("node app/pipe \(String(S_IFIFO | 0o644, radix: 8))"), "\(parts)")
        let before = try plan("COPY app/ /app/").steps[0].key
        chmod(dir.file("app/pipe"), 0o600)
        #expect(try plan("COPY app/ /app/").steps[0].key != before)
    }

    @Test(.enabled(if: getuid() == 0, "mknod of a character device needs root"))
    func aDeviceIsKeyedByItsNumbers() throws {
        _ = try dir.sub("dev")
        #expect(mknod(dir.file("dev/null"), S_IFCHR | 0o666, dev_t(1 << 8 | 3)) == 0)  // 1:3, as /dev/null
        chmod(dir.file("dev/null"), 0o666)  // past the umask
        let parts = try withTimeLimit(unblocking: nil) {
            try BuildPlan.contentDigests(["dev"], context: context, ignore: ContextIgnore(patterns: []))
        }
        #expect(parts.contains("device dev/null \(String(S_IFCHR | 0o666, radix: 8)) 1:3"), "\(parts)")
    }
}

/// Runs `body` on another thread; if it takes more than 20 s, records a failure and opens the
/// FIFO `unblocking` for writing and closes it, so a read stuck on it ends.
private func withTimeLimit<T: Sendable>(unblocking fifo: String?, _ body: @escaping @Sendable () throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: Result<T, Error>?
    Thread.detachNewThread {
        result = Result { try body() }
        done.signal()
    }
    if done.wait(timeout: .now() + 20) == .timedOut {
        Issue.record("still running after 20 s: a FIFO was read")
        if let f = fifo {
            let fd = open(f, O_WRONLY | O_NONBLOCK)
            if fd >= 0 { close(fd) }
        }
        done.wait()
    }
    return try result!.get()
}
