import Foundation
import Host
@testable import RuntimeSuite
import Testing

// The footprint probes (Sharma et al., Middleware 2016) on real /proc output (Fixtures/footprint:
// smaps_rollup and stat of an idle sleep(1) and of a paused qemu-system-x86_64 7.2 (Debian 12) under TCG,
// Linux 6.18), and the protocol line an idle instance's first line waits on.

private func fixture(_ name: String) throws -> String {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/footprint/\(name)")
    return try String(contentsOf: url, encoding: .utf8)
}

@Test func smapsRollupGivesRssAndPssInBytes() throws {
    #expect(try Footprint.smapsRollup(try fixture("sleep.smaps_rollup")) == .init(rssBytes: 1892 * 1024, pssBytes: 268 * 1024))
    #expect(try Footprint.smapsRollup(try fixture("qemu.smaps_rollup")) == .init(rssBytes: 37868 * 1024, pssBytes: 33269 * 1024))
    // Pss_Anon and the like are not Pss; without Rss and Pss it is an error.
    #expect(throws: FigureError.self) { try Footprint.smapsRollup("Pss_Anon:  4 kB\nRss:  8 kB\n") }
    #expect(throws: FigureError.self) { try Footprint.smapsRollup("") }
}

@Test func statGivesTheParentEvenWithParenthesesInTheName() throws {
    #expect(try Footprint.parentPID(stat: try fixture("sleep.stat")) == 5714)
    #expect(try Footprint.parentPID(stat: try fixture("qemu.stat")) == 8595)
    #expect(try Footprint.parentPID(stat: "42 (a) b (c)) S 7 42 42 0 -1 0") == 7)
    #expect(throws: FigureError.self) { try Footprint.parentPID(stat: "42 sh S 7") }
}

@Test func aRunningTreeIsMeasured() throws {
    let me = getpid()
    #expect(Footprint.processTree(me).first == me)
    let m = try #require(Footprint.ofTree(me))
    #expect(m.pssBytes > 0 && m.rssBytes >= m.pssBytes, "\(m)")
    // A process that has ended has no footprint.
    #expect(Footprint.ofTree(Int32.max) == nil)
}

@Test func anIdleInstanceSaysItIsReadyWithItsPIDAndTheVMItsUsedMemory() throws {
    let script = RuntimeBench.idleScript(id: "abc", guestMemory: true)
        .replacingOccurrences(of: "exec sleep 2147483647", with: "")
    let r = try Command.run(["/bin/sh", "-c", script], timeout: 10)
    let lines = r.output.split(separator: "\n")
    #expect(lines.count == 2, "\(r.output)")
    #expect(lines.first?.hasPrefix("IMGBENCH-READY abc ") == true && Int32(lines[0].split(separator: " ")[2]) != nil, "\(r.output)")
    // MemTotal - MemAvailable of this host, in KiB.
    let used = try #require(lines.last?.split(separator: " ").last.flatMap { UInt64($0) }, "\(r.output)")
    #expect(used > 1024 && used < 1 << 40)
}

@Test func aWatchWaitsForAWholeLine() {
    let w = ProtocolWatch(id: "x")
    w.feed("IMGBENCH-MEMORY x 12")
    #expect(w.wait(for: "IMGBENCH-MEMORY x", until: Date()) == nil)
    w.feed("34\n")
    #expect(w.wait(for: "IMGBENCH-MEMORY x", until: Date()) == "1234")
}
