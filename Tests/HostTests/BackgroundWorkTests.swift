import Foundation
@testable import Host
import Testing
import TestSupport

/// The cgroup v1 cpu controller's folder, if this host has one with `cpu.idle`.
private let idleCapable: Bool = {
    FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpu/cpu.idle")
}()

@Suite("background work: nice and the idle cpu cgroup")
struct BackgroundWorkTests {
    /// The calling thread's nice value (field 19 of its stat) and cpu cgroup.
    func thisThread() -> (nice: String, cgroup: String) {
        let stat = (try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8)) ?? ""
        let fields = stat.split(separator: ")").last.map { $0.split(separator: " ").map(String.init) } ?? []
        let groups = (try? String(contentsOfFile: "/proc/thread-self/cgroup", encoding: .utf8)) ?? ""
        let cpu = groups.split(separator: "\n").first { $0.split(separator: ":", maxSplits: 2)[1].split(separator: ",").contains("cpu") }
        return (fields.count > 16 ? fields[16] : "?", cpu.map { String($0.split(separator: ":", maxSplits: 2)[2]) } ?? "?")
    }

    @Test("a thread runs its background work at nice 10 in an idle cpu cgroup, and is as before afterwards; the group goes with the last thread",
          .enabled(if: isRoot && idleCapable, "needs root and a cgroup v1 cpu controller with cpu.idle"))
    func idleGroup() throws {
        let before = thisThread()
        // The group of an imgbench killed before it removed it: removed by the next one.
        let dead = try run(["sh", "-c", "echo $$"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let cpuRoot = "/sys/fs/cgroup/cpu" + (before.cgroup == "/" ? "" : before.cgroup)
        let stale = cpuRoot + "/imgbench-idle-\(dead)"
        #expect(mkdir(stale, 0o755) == 0)
        IdleCPUGroup.removeStale(in: cpuRoot)
        #expect(!FileManager.default.fileExists(atPath: stale))
        rmdir(stale)
        final class Seen: @unchecked Sendable {
            var inside: (nice: String, cgroup: String) = ("", "")
            var idle = ""
            var second = ""
        }
        let seen = Seen()
        let t = Thread {
            let start = BackgroundWorkTests().thisThread()
            Processors.inBackground(nice: 10) {
                seen.inside = BackgroundWorkTests().thisThread()
                if let dir = IdleCPUGroup.folder {
                    seen.idle = ((try? String(contentsOfFile: dir + "/cpu.idle", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                }
                // A second thread joins the same group while this one is in it.
                let other = Thread {
                    Processors.inBackground(nice: 10) { seen.second = BackgroundWorkTests().thisThread().cgroup }
                }
                other.start()
                while other.isExecuting || !other.isFinished { Thread.sleep(forTimeInterval: 0.01) }
            }
            let after = BackgroundWorkTests().thisThread()
            #expect(after.nice == start.nice && after.cgroup == start.cgroup, "\(start) then \(after)")
        }
        t.start()
        while !t.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        #expect(seen.inside.nice == "10")
        #expect(seen.inside.cgroup.hasSuffix("/imgbench-idle-\(getpid())"), "\(seen.inside)")
        #expect(seen.idle == "1")
        #expect(seen.second == seen.inside.cgroup)
        // The last thread out removed the group (unless other tests' background threads, which
        // run beside these, are in it now).
        if IdleCPUGroup.folder == nil {
            #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpu" + seen.inside.cgroup))
        }
        #expect(thisThread().cgroup == before.cgroup)
    }
    @Test("promote takes a thread out of the idle group, back to its cgroup at nice 10; its nice value comes back when its work ends",
          .enabled(if: isRoot && idleCapable, "needs root and a cgroup v1 cpu controller with cpu.idle"))
    func promote() throws {
        final class Seen: @unchecked Sendable {
            var before: (nice: String, cgroup: String) = ("", "")
            var lowered: (nice: String, cgroup: String) = ("", "")
            var promoted: (nice: String, cgroup: String) = ("", "")
            var after: (nice: String, cgroup: String) = ("", "")
        }
        let seen = Seen()
        let inside = DispatchSemaphore(value: 0), promoted = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        final class Tid: @unchecked Sendable { var value: Int32 = 0 }
        let tid = Tid()
        let t = Thread {
            seen.before = BackgroundWorkTests().thisThread()
            Processors.inBackground(nice: 10) {
                seen.lowered = BackgroundWorkTests().thisThread()
                tid.value = IdleCPUGroup.thisThread
                inside.signal()
                promoted.wait()
                seen.promoted = BackgroundWorkTests().thisThread()
            }
            seen.after = BackgroundWorkTests().thisThread()
            done.signal()
        }
        t.start()
        inside.wait()
        // This thread only: other tests' background threads may be in the group too.
        IdleCPUGroup.promote(only: [tid.value])
        promoted.signal()
        done.wait()
        #expect(seen.lowered.nice == "10" && seen.lowered.cgroup.contains("imgbench-idle-"), "\(seen.lowered)")
        #expect(seen.promoted.cgroup == seen.before.cgroup && seen.promoted.nice == "10", "\(seen.before) then \(seen.promoted)")
        #expect(seen.after == seen.before, "\(seen.before) then \(seen.after)")
    }
}
