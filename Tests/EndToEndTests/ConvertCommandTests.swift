import Foundation
import QcowIO
import Testing
import TestSupport

/// `imgbench qcow convert|create|compare|info` as a user runs them, judged by qemu-img.
@Suite struct ConvertCommandTests {
    @Test(arguments: ["512", "4K", "64K", "2M"], [false, true])
    func convertOutputPassesQemuCheckAndCompare(clusterSize: String, compress: Bool) throws {
        let dir = try TempDir("convert")
        let raw = dir.file("disk.raw"), out = dir.file("disk.qcow2")
        try writeRandomRawImage(raw, size: 3 << 20, seed: 12)
        var args = ["qcow", "convert", raw, out, "--cluster-size", clusterSize, "--progress", "none", "--format", "json"]
        if compress { args.append("--compress") }
        let r = try runProcess(try IMGBenchBinary.path(), args)
        try #require(r.status == 0, "\(r.output)")
        #expect(r.stdout.contains("\"compressedClusters\""))
        let q = try Qemu.check(out)
        #expect(q.status == 0 && q.leaks == 0 && q.corruptions == 0, "\(q)")
        let c = try Qemu.img("compare", raw, out)
        #expect(c.status == 0, "\(c.output)")
        // imgbench compare agrees with qemu-img compare, both ways.
        #expect(try imgbench("qcow", "compare", raw, out).status == 0)
        try patch(raw, at: 1_000_000, [0xEE])
        let differ = try imgbench("qcow", "compare", out, raw)
        #expect(differ.status == 1 && differ.stdout.contains("Content mismatch at offset"), "\(differ.output)")
        #expect(try Qemu.img("compare", out, raw).status == 1)
    }

    @Test func convertWithBackingWritesOnlyTheDifference() throws {
        let dir = try TempDir("convert-backing")
        let baseRaw = dir.file("base.raw"), newRaw = dir.file("new.raw")
        try writeRandomRawImage(baseRaw, size: 4 << 20, seed: 5)
        var disk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: baseRaw)))
        disk.replaceSubrange(2_000_000..<2_050_000, with: [UInt8](repeating: 0x77, count: 50_000))
        for i in 0..<65536 { disk[i] = 0 }
        try Data(disk).write(to: URL(fileURLWithPath: newRaw))
        let made = try imgbench("qcow", "convert", baseRaw, dir.file("base.qcow2"), "--progress", "none")
        try #require(made.status == 0, "\(made.output)")
        let diff = dir.file("diff.qcow2")
        let r = try imgbench("qcow", "convert", newRaw, diff, "--backing", "base.qcow2", "--compress", "--progress", "none", "--format", "json")
        try #require(r.status == 0, "\(r.output)")
        struct Out: Decodable { var stats: Qcow2ConvertStats }
        let stats = try decodeJSON(Out.self, r.stdout).stats
        #expect(stats.sameAsBackingSkipped > 0 && stats.zeroClustersMarked >= 1 && stats.dataClusters <= 3, "\(stats)")
        let q = try Qemu.check(diff)
        #expect(q.status == 0 && q.leaks == 0 && q.corruptions == 0, "\(q)")
        #expect(try Qemu.img("compare", diff, newRaw).status == 0)
        let info = try imgbench("qcow", "info", diff, "--format", "json")
        #expect(info.status == 0 && info.stdout.contains("\"backingFile\" : \"base.qcow2\""), "\(info.output)")
    }

    @Test func createdImageIsWhatQemuExpects() throws {
        let dir = try TempDir("create")
        let img = dir.file("new.qcow2")
        let r = try imgbench("qcow", "create", img, "1G", "--cluster-size", "2M")
        try #require(r.status == 0, "\(r.output)")
        let info = try Qemu.imgOK("info", "--output=json", img)
        #expect(info.stdout.contains("\"virtual-size\": 1073741824") && info.stdout.contains("\"cluster-size\": 2097152"), "\(info.stdout)")
        let q = try Qemu.check(img)
        #expect(q.status == 0 && q.leaks == 0, "\(q)")
        // Bad arguments are refused before anything is written.
        let bad = try imgbench("qcow", "create", dir.file("bad.qcow2"), "1G", "--cluster-size", "3K")
        #expect(bad.status == 1 && bad.errorLines.count == 1 && bad.stderr.contains("cluster size"), "\(bad.output)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("bad.qcow2")))
    }
}

/// An interrupted convert leaves neither the destination nor its `.partial` file behind.
@Suite struct InterruptedConvertTests {
    @Test(arguments: [SIGINT, SIGTERM])
    func interruptedConvertLeavesNothing(signal: Int32) throws {
        // Synchronous on purpose: the timing is wall-clock, not the cooperative pool's.
        let dir = try TempDir("interrupt")
        let raw = dir.file("big.raw"), out = dir.file("big.qcow2")
        // Incompressible data, compressed on one thread: slow enough to be caught part-way.
        var rng = SeededRandom(seed: UInt64(signal))
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: { _ = FileManager.default.createFile(atPath: raw, contents: nil); return raw }()))
        for _ in 0..<96 { try h.write(contentsOf: Data(rng.bytes(1 << 20))) }
        try h.close()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try IMGBenchBinary.path())
        p.arguments = ["qcow", "convert", raw, out, "--compress", "--threads", "1", "--cluster-size", "4K", "--progress", "none"]
        let io = try CapturedOutput()
        io.attach(to: p)
        try p.run()
        let deadline = Date().addingTimeInterval(20)
        while p.isRunning && !FileManager.default.fileExists(atPath: out + ".partial") && Date() < deadline {
            usleep(2_000)
        }
        usleep(100_000)
        let wasRunning = p.isRunning
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        let r = io.finish(status: p.terminationStatus)
        try #require(wasRunning, "convert finished before it could be interrupted: \(r.output)")
        #expect(r.status == 128 + signal, "\(r.output)")
        #expect(r.stderr.contains("interrupted"), "\(r.output)")
        #expect(!FileManager.default.fileExists(atPath: out), "no destination after an interruption")
        #expect(!FileManager.default.fileExists(atPath: out + ".partial"), "no partial file after an interruption")
    }
}

/// `imgbench qcow info --format json` reports what `qemu-img info` reports, for each image of a chain.
@Suite struct InfoCommandTests {
    @Test func infoAgreesWithQemuImgInfo() throws {
        let dir = try TempDir("info")
        let base = dir.file("base.qcow2"), top = dir.file("top.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096,refcount_bits=8", base, "3M")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=65536,lazy_refcounts=on", "-b", "base.qcow2", "-F", "qcow2", top)
        try Qemu.io(top, ["write -P 1 0 64k"])
        let r = try imgbench("qcow", "info", top, "--format", "json")
        try #require(r.status == 0, "\(r.output)")
        let infos = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        try #require(infos.count == 2)
        for (info, path) in zip(infos, [top, base]) {
            let q = try Qemu.imgOK("info", "--output=json", path)
            let qemu = try #require(try JSONSerialization.jsonObject(with: Data(q.stdout.utf8)) as? [String: Any])
            let specific = (qemu["format-specific"] as? [String: Any])?["data"] as? [String: Any] ?? [:]
            #expect((info["virtualSize"] as? NSNumber)?.uint64Value == (qemu["virtual-size"] as? NSNumber)?.uint64Value)
            #expect(info["clusterSize"] as? Int == qemu["cluster-size"] as? Int)
            #expect(info["refcountBits"] as? Int == specific["refcount-bits"] as? Int)
            #expect(info["backingFile"] as? String == qemu["backing-filename"] as? String)
            #expect(info["backingFormat"] as? String == qemu["backing-filename-format"] as? String)
            #expect(info["compressionType"] as? String == specific["compression-type"] as? String)
            #expect((info["fileBytes"] as? NSNumber)?.uint64Value == UInt64(try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int))
            #expect((info["diskBytes"] as? NSNumber)?.uint64Value == (qemu["actual-size"] as? NSNumber)?.uint64Value)
        }
        // lazy_refcounts shows as a compatible feature of the top image.
        #expect((infos[0]["compatibleFeatures"] as? [String]) == ["lazy refcounts"])
    }
}
