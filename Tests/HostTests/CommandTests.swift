import Foundation
@testable import Host
import Testing

// The one process runner: exit statuses, output, time-outs, daemons that keep descriptors open,
// signals, missing programs.

@Test func anExitStatusAndTheOutputAreKept() throws {
    let r = try Command.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    #expect(r.status == 3 && r.signal == nil && !r.timedOut)
    #expect(r.output.contains("out") && r.output.contains("err"))
}

@Test func checkFailsWithWhatTheCommandWasForAndItsTail() throws {
    do {
        try Command.check("counting", ["/bin/sh", "-c", "seq 1 50; exit 4"])
        Issue.record("a failing command passed")
    } catch let HostError.commandFailed(what, _, status, tail) {
        #expect(what == "counting" && status == 4)
        #expect(tail.hasSuffix("50") && !tail.contains("\n30\n"), "only the last lines: \(tail)")
    }
}

@Test func aTimeoutStopsTheProgram() throws {
    let start = Date()
    let r = try Command.run(["sleep", "30"], timeout: 0.3)
    #expect(r.timedOut && r.status != 0)
    #expect(Date().timeIntervalSince(start) < 5)
}

@Test func outputDoesNotWaitForADaemonThatKeepsItsDescriptors() throws {
    // The shell leaves a sleeping child holding standard output; the run ends with the shell.
    let start = Date()
    let out = try Command.output(["/bin/sh", "-c", "sleep 20 & echo started"])
    #expect(out.contains("started"))
    #expect(Date().timeIntervalSince(start) < 1.5)
    _ = try? Command.run(["pkill", "-f", "^sleep 20$"])
}

@Test func aShellScriptRunsInItsFolderAndASignalIsAnInterruption() throws {
    let dir = NSTemporaryDirectory() + "/imgbench-host-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let out = try Command.shell("pwd", in: dir)
    #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == (dir as NSString).resolvingSymlinksInPath)
    #expect(throws: HostError.interrupted(signal: SIGTERM)) { try Command.shell("kill -TERM $$", in: dir) }
}

@Test func aMissingProgramNamesItsPackage() {
    #expect(throws: HostError.missingTool("qemu-img-nonexistent", package: "qemu-img-nonexistent")) {
        try Command.resolve("qemu-img-nonexistent")
    }
    #expect(Command.exists("sh"))
}

@Test func cleanupRunsWhatIsLeftNewestFirst() {
    final class Order: @unchecked Sendable { var names: [String] = [] }
    let order = Order()
    let a = Cleanup.register("host-test a") { order.names.append("a") }
    _ = Cleanup.register("host-test b") { order.names.append("b") }
    Cleanup.unregister(a)
    let c = Cleanup.register("host-test c") { order.names.append("c") }
    Cleanup.run(c)
    Cleanup.run(c)
    #expect(order.names == ["c"])
    _ = Cleanup.run { $0.hasPrefix("host-test") }
    #expect(order.names == ["c", "b"])
}

@Test func byteCountsParseAndFormat() {
    #expect(ByteCount.parse("64K") == 65536 && ByteCount.parse("4 GiB") == 4 << 30 && ByteCount.parse("x") == nil)
    #expect(ByteCount.format(65536) == "64.0 KiB")
}
