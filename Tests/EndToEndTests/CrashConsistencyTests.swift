import Foundation
import QcowIO
import Testing
import TestSupport

/// A writer killed with SIGKILL part-way leaves an image that `qemu-img check` finds free of
/// corruption: leaked clusters at most (exit 0 or 3), never exit 2.
@Suite struct CrashConsistencyTests {
    /// Synchronous on purpose: the kill times are wall-clock, not the cooperative pool's.
    @Test func killedWriterLeavesNoCorruption() throws {
        let dir = try TempDir("kill")
        let baseRaw = dir.file("base.raw"), base = dir.file("base.qcow2"), image = dir.file("image.qcow2")
        let size = 8 << 20
        try writeRandomRawImage(baseRaw, size: size, seed: 7)
        try Qemu.imgOK("convert", "-O", "qcow2", "-o", "cluster_size=4096", baseRaw, base)
        // 512-byte clusters and 64-bit refcounts: the refcount table create() makes covers 2 MiB
        // of clusters, so the writers also grow it, and add refcount blocks, while being killed.
        let created = try imgbench("qcow", "create", image, "--cluster-size", "512", "--refcount-bits", "64", "-b", "base.qcow2", "-F", "qcow2")
        try #require(created.status == 0, "\(created.output)")
        let exe = try IMGBenchBinary.path()
        var rng = SeededRandom(seed: 0xC0FFEE)
        var killed = 0
        for round in 1...6 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = ["qcow", "write-random", image, "--seed", "\(round)", "--count", "10000000", "--progress", "25"]
            let io = try CapturedOutput()
            io.attach(to: p)
            try p.run()
            // Wait until it has written something, then a random while longer.
            let deadline = Date().addingTimeInterval(30)
            while p.isRunning && !io.stdoutSoFar.contains("done") && Date() < deadline {
                usleep(5_000)
            }
            usleep(UInt32(20 + rng.below(500)) * 1_000)
            let wasRunning = p.isRunning
            if wasRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            let r = io.finish(status: p.terminationStatus)
            #expect(wasRunning, "round \(round): the writer ended before it was killed: \(r.output)")
            if wasRunning {
                #expect(p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL, "round \(round): \(r.output)")
                killed += 1
            }
            let lastDone = r.stdout.split(separator: "\n").last { $0.hasPrefix("done ") } ?? "none"
            let q = try Qemu.check(image)
            #expect(q.corruptions == 0 && (q.status == 0 || q.status == 3),
                    "round \(round), killed after \(lastDone): qemu-img check: \(q)")
            // imgbench's own check agrees, and every guest byte still reads.
            let mine = try imgbench("qcow", "check", "--format", "json", image)
            let result = try decodeJSON(CheckResult.self, mine.stdout)
            #expect(result.corruptions == 0 && result.leaks == q.leaks, "round \(round): imgbench check \(mine.output); qemu-img \(q)")
            let img = try QcowImage(path: image)
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            for at in stride(from: 0, to: size, by: buffer.count) {
                try buffer.withUnsafeMutableBytes { try img.read(into: $0, at: UInt64(at)) }
            }
        }
        #expect(killed >= 5, "enough rounds must be killed mid-stream")
        let grown = try QcowImage(path: image).header.refcountTableClusters
        #expect(grown > 1, "the writers should have grown the refcount table (still \(grown) cluster)")
        // A writer that runs to completion over the leaky image also leaves it corruption-free.
        let finished = try imgbench("qcow", "write-random", image, "--seed", "99", "--count", "300")
        #expect(finished.status == 0, "\(finished.output)")
        let q = try Qemu.check(image)
        #expect(q.corruptions == 0 && (q.status == 0 || q.status == 3), "\(q)")
    }

    /// The stress tool on its own: what it writes is what qemu reads, and nothing leaks.
    @Test func writeRandomToCompletionIsClean() throws {
        let dir = try TempDir("stress")
        let image = dir.file("s.qcow2")
        let created = try imgbench("qcow", "create", image, "2M", "--cluster-size", "4K")
        try #require(created.status == 0, "\(created.output)")
        let r = try imgbench("qcow", "write-random", image, "--seed", "3", "--count", "400", "--progress", "100")
        #expect(r.status == 0, "\(r.output)")
        #expect(r.stdout.split(separator: "\n") == ["done 100", "done 200", "done 300", "done 400"])
        let q = try Qemu.check(image)
        #expect(q.status == 0 && q.leaks == 0 && q.corruptions == 0, "\(q)")
        let help = try imgbench("qcow", "write-random", "--help")
        #expect(help.stdout.contains("Stress tool"))
    }
}
