import Foundation
import Host
import Testing

// Where a result was made: read from this machine, and told apart field by field.

@Test func provenanceRecordsTheMachineTheToolsAndTheSourceCommit() throws {
    let p = Provenance.current(accelerator: "tcg", date: Date(timeIntervalSince1970: 1_700_000_000))
    #expect(p.imgbenchVersion == Provenance.version && p.madeAt == "2023-11-14T22:13:20Z" && p.accelerator == "tcg")
    #expect(p.cpus >= 1 && p.memoryBytes > 0 && !p.kernel.isEmpty && p.kernel != "unknown" && !p.hostname.isEmpty)
    let kernel = try String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    #expect(p.kernel == kernel)
    // The tests run from a git checkout: the commit is the source's.
    let commit = try #require(p.commit)
    let head = try Command.check("git", ["git", "-c", "safe.directory=*", "-C", URL(fileURLWithPath: #filePath).deletingLastPathComponent().path,
                                         "rev-parse", "--short=12", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
    #expect(commit.contains(head), "\(commit) vs \(head)")
    #expect(Provenance.versionLine == "imgbench \(Provenance.version) (commit \(commit))")
    if Command.exists("qemu-system-x86_64") { #expect(p.qemu?.hasPrefix("QEMU emulator version") == true, "\(p.qemu ?? "nil")") }
    if Command.exists("runc") { #expect(p.runc?.hasPrefix("runc version") == true, "\(p.runc ?? "nil")") }
    if Command.exists("mmdebstrap") { #expect(p.mmdebstrap?.hasPrefix("mmdebstrap") == true, "\(p.mmdebstrap ?? "nil")") }
}

@Test func provenanceDifferencesNameEachFieldButNotTheDate() {
    let a = Provenance.current(date: Date(timeIntervalSince1970: 0))
    var b = Provenance.current(date: Date())
    #expect(a.differences(from: b).isEmpty)
    b.cpus = a.cpus + 1
    b.commit = "v0.0-1-gdeadbeef"
    b.accelerator = "kvm"
    #expect(a.differences(from: b) == ["CPU count: \(a.cpus) vs \(a.cpus + 1)", "imgbench commit: \(a.commit ?? "none") vs v0.0-1-gdeadbeef",
                                       "accelerator: none vs kvm"])
}
