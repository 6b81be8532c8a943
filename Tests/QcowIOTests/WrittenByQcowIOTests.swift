import Foundation
@testable import QcowIO
import Testing
import TestSupport

/// Images written by QcowIO, judged by qemu-img: `qemu-img check` finds nothing (no leaks, no
/// corruption) and `qemu-img compare` finds the same guest contents as the source.
@Suite struct WrittenByQcowIOTests {
    static let clusterSizes = [512, 4096, 65536, 2 << 20]

    /// 3 MiB and three sectors: the last cluster is partial at every cluster size but 512.
    static let diskSize = (3 << 20) + 1536

    @Test(arguments: clusterSizes, [false, true])
    func convertPassesQemuCheckAndCompare(clusterSize: Int, compress: Bool) throws {
        let dir = try TempDir("convert")
        let raw = dir.file("src.raw"), out = dir.file("out.qcow2")
        try writeFile(raw, makeDiskContents(size: Self.diskSize, seed: UInt64(clusterSize)))
        var o = Qcow2ConvertOptions(clusterSize: clusterSize, compress: compress)
        o.threads = 2
        let stats = try Qcow2Converter.convert(source: try DiskImages.open(raw), to: out, options: o)
        #expect(!FileManager.default.fileExists(atPath: out + ".partial"))
        #expect(stats.dataClusters > 0)
        #expect(stats.zeroClustersSkipped > 0 || clusterSize == 2 << 20)
        if compress { #expect(stats.compressedClusters > 0) } else { #expect(stats.compressedClusters == 0) }
        try Qemu.expectClean(out)
        try Qemu.expectIdentical(raw, out)
        // QcowIO reads back what it wrote, and its own check agrees with qemu-img's.
        let img = try QcowImage(path: out)
        #expect(firstDifference(try readAll(img), try readFile(raw)) == nil)
        let mine = try img.check()
        #expect(mine.leaks == 0 && mine.corruptions == 0, "\(mine.messages)")
        #expect(mine.compressedClusters == stats.compressedClusters)
    }

    /// Compression on many threads loses no cluster: every compressible cluster is stored
    /// compressed, and the image reads back right.
    @Test(arguments: [2, 8])
    func parallelCompressionKeepsEveryCluster(threads: Int) throws {
        let dir = try TempDir("threads")
        let raw = dir.file("text.raw"), out = dir.file("text.qcow2")
        var contents = [UInt8](repeating: 0, count: 8 << 20)
        for i in contents.indices { contents[i] = UInt8(ascii: "a") &+ UInt8(truncatingIfNeeded: (i / 7919) % 26) }
        try writeFile(raw, contents)
        var o = Qcow2ConvertOptions(clusterSize: 4096, compress: true)
        o.threads = threads
        let stats = try Qcow2Converter.convert(source: try DiskImages.open(raw), to: out, options: o)
        #expect(stats.dataClusters == 2048)
        #expect(stats.compressedClusters == stats.dataClusters, "clusters stored uncompressed: \(stats)")
        try Qemu.expectClean(out)
        try Qemu.expectIdentical(out, raw)
    }

    /// Convert against a base: only what differs is written, and the result, falling through to
    /// the base, is the full source.
    @Test(arguments: clusterSizes, [false, true])
    func convertWithBackingIsADiff(clusterSize: Int, compress: Bool) throws {
        let dir = try TempDir("diff")
        let baseRaw = dir.file("base.raw"), newRaw = dir.file("new.raw")
        let base = dir.file("base.qcow2"), diff = dir.file("diff.qcow2")
        // Three regions: runs changed in the first third, whole clusters zeroed after it (where the
        // base has data), the rest as in the base.
        let size = max(Self.diskSize, 5 * clusterSize / 2 + 1536)
        var contents = makeDiskContents(size: size, seed: 11)
        try writeFile(baseRaw, contents)
        var rng = SeededRandom(seed: UInt64(clusterSize) ^ 0xD1FF)
        for _ in 0..<12 {
            let at = Int(rng.below(UInt64(size / 3 - 70_000)))
            let n = 1 + Int(rng.below(69_000))
            contents.replaceSubrange(at..<(at + n), with: rng.bytes(n))
        }
        let zeroAt = (size / 3 + clusterSize - 1) / clusterSize * clusterSize
        for i in zeroAt..<(zeroAt + max(clusterSize, 200_000)) { contents[i] = 0 }
        try writeFile(newRaw, contents)

        var baseOptions = Qcow2ConvertOptions(clusterSize: clusterSize, compress: compress)
        baseOptions.threads = 2
        _ = try Qcow2Converter.convert(source: try DiskImages.open(baseRaw), to: base, options: baseOptions)
        var o = Qcow2ConvertOptions(clusterSize: clusterSize, compress: compress, backingFile: "base.qcow2", backingFormat: "qcow2")
        o.threads = 2
        let stats = try Qcow2Converter.convert(source: try DiskImages.open(newRaw), to: diff, options: o)
        #expect(stats.sameAsBackingSkipped > 0, "\(stats)")
        #expect(stats.dataClusters > 0, "\(stats)")
        #expect(stats.zeroClustersMarked > 0, "zeroed clusters over base data must be marked: \(stats)")

        try Qemu.expectClean(diff)
        try Qemu.expectIdentical(diff, newRaw)
        try Qemu.expectIdentical(base, baseRaw)
        let info = try Qemu.img("info", "--output=json", diff)
        #expect(info.stdout.contains("\"backing-filename\": \"base.qcow2\""), "\(info.stdout)")
        #expect(info.stdout.contains("\"backing-filename-format\": \"qcow2\""), "\(info.stdout)")
        // The diff holds far less than the full disk.
        let full = try Qcow2Converter.convert(source: try DiskImages.open(newRaw), to: dir.file("full.qcow2"), options: baseOptions)
        #expect(stats.dataClusters < full.dataClusters)
    }

    @Test func convertAgainstARawBaseAndFromAChain() throws {
        let dir = try TempDir("rawbase")
        let baseRaw = dir.file("base.raw"), newRaw = dir.file("new.raw"), diff = dir.file("diff.qcow2")
        let base = makeDiskContents(size: 2 << 20, seed: 3)
        var new = base
        new.replaceSubrange(100_000..<100_100, with: [UInt8](repeating: 7, count: 100))
        try writeFile(baseRaw, base)
        try writeFile(newRaw, new)
        let o = Qcow2ConvertOptions(clusterSize: 4096, backingFile: "base.raw", backingFormat: "raw")
        let stats = try Qcow2Converter.convert(source: try DiskImages.open(newRaw), to: diff, options: o)
        #expect(stats.dataClusters == 1) // 100_000..<100_100 lies in one 4 KiB cluster (24)
        try Qemu.expectClean(diff)
        try Qemu.expectIdentical(diff, newRaw)
        // The chain (diff over a raw base) flattened into one image.
        let flat = dir.file("flat.qcow2")
        _ = try Qcow2Converter.convert(source: try DiskImages.open(diff), to: flat, options: .init(clusterSize: 65536, compress: true))
        try Qemu.expectClean(flat)
        try Qemu.expectIdentical(flat, newRaw)
    }

    /// One random operation on an image and on its raw mirror.
    enum Op: CustomStringConvertible {
        case write(offset: UInt64, bytes: [UInt8])
        case zero(offset: UInt64, length: UInt64)
        var description: String {
            switch self {
            case let .write(o, b): return "write \(b.count) at \(o)"
            case let .zero(o, l): return "zero \(l) at \(o)"
            }
        }
    }

    static func randomOps(_ rng: inout SeededRandom, count: Int, size: UInt64, clusterSize cs: UInt64) -> [Op] {
        (0..<count).map { _ in
            switch rng.below(10) {
            case 0, 1:
                let first = rng.below(size / cs)
                return .zero(offset: first * cs, length: min(1 + rng.below(3), size / cs - first) * cs)
            case 2:
                // Whole cluster(s), aligned.
                let first = rng.below(size / cs)
                let n = min(1 + rng.below(2), size / cs - first) * cs
                return .write(offset: first * cs, bytes: rng.bytes(Int(n)))
            case 3:
                // Across a cluster boundary.
                let boundary = (1 + rng.below(size / cs - 1)) * cs
                let before = 1 + rng.below(cs), after = 1 + rng.below(cs)
                return .write(offset: boundary - before, bytes: rng.bytes(Int(before + after)))
            default:
                // Partial cluster, a few bytes to most of one.
                let n = 1 + rng.below(cs)
                return .write(offset: rng.below(size - n), bytes: rng.bytes(Int(n)))
            }
        }
    }

    static func apply(_ ops: [Op], to img: QcowImage, mirror: inout [UInt8]) throws {
        for op in ops {
            switch op {
            case let .write(o, b):
                try img.write(b, at: o)
                mirror.replaceSubrange(Int(o)..<(Int(o) + b.count), with: b)
            case let .zero(o, l):
                try img.writeZeroes(at: o, length: l)
                for i in Int(o)..<Int(o + l) { mirror[i] = 0 }
            }
        }
    }

    enum Start: String, CaseIterable, Sendable { case empty, backed, compressed, compressedBacked }

    struct WriteCase: Sendable, CustomTestStringConvertible {
        var clusterSize: Int
        var refcountBits: Int
        var start: Start
        /// Virtual size; nil for the default (1 MiB, 8 MiB with 2 MiB clusters).
        var size: UInt64? = nil
        var testDescription: String {
            "\(start.rawValue), \(clusterSize) B clusters, \(refcountBits)-bit refcounts" + (size.map { ", \($0) bytes" } ?? "")
        }
    }

    static let writeCases: [WriteCase] = [
        .init(clusterSize: 512, refcountBits: 16, start: .empty),
        .init(clusterSize: 512, refcountBits: 64, start: .backed),
        .init(clusterSize: 4096, refcountBits: 1, start: .empty),
        .init(clusterSize: 4096, refcountBits: 8, start: .backed),
        .init(clusterSize: 4096, refcountBits: 16, start: .compressed),
        .init(clusterSize: 4096, refcountBits: 2, start: .compressedBacked),
        .init(clusterSize: 65536, refcountBits: 16, start: .backed),
        .init(clusterSize: 65536, refcountBits: 32, start: .compressed),
        .init(clusterSize: 2 << 20, refcountBits: 16, start: .compressedBacked),
        // Refcounts of one bit cannot share a host cluster between compressed clusters.
        .init(clusterSize: 4096, refcountBits: 1, start: .compressed),
        // A virtual size that ends inside a cluster.
        .init(clusterSize: 65536, refcountBits: 16, start: .empty, size: (1 << 20) + 1536),
        .init(clusterSize: 4096, refcountBits: 16, start: .backed, size: (1 << 20) + 512),
    ]

    /// `QcowImage` writes (partial, cross-cluster, whole, zeroed; over a backing file; over
    /// compressed clusters) against the same writes on a raw file.
    @Test(arguments: writeCases)
    func randomWritesMatchARawMirror(_ c: WriteCase) throws {
        let dir = try TempDir("writes")
        let size = c.size ?? UInt64(c.clusterSize == 2 << 20 ? 8 << 20 : 1 << 20)
        let cs = UInt64(c.clusterSize)
        let image = dir.file("image.qcow2"), mirrorPath = dir.file("mirror.raw")
        var mirror = [UInt8](repeating: 0, count: Int(size))
        var o = Qcow2ConvertOptions(clusterSize: c.clusterSize, compress: true)
        o.refcountBits = c.refcountBits
        o.threads = 2
        switch c.start {
        case .empty:
            try QcowImage.create(path: image, options: .init(virtualSize: size, clusterSize: c.clusterSize, refcountBits: c.refcountBits)).close()
        case .backed:
            mirror = makeDiskContents(size: Int(size), seed: 21)
            try writeFile(dir.file("base.raw"), mirror)
            try Qemu.imgOK("convert", "-O", "qcow2", "-o", "cluster_size=\(c.clusterSize)", dir.file("base.raw"), dir.file("base.qcow2"))
            try QcowImage.create(path: image, options: .init(virtualSize: 0, clusterSize: c.clusterSize, refcountBits: c.refcountBits,
                                                            backingFile: "base.qcow2", backingFormat: "qcow2")).close()
        case .compressed:
            mirror = makeDiskContents(size: Int(size), seed: 22)
            try writeFile(dir.file("src.raw"), mirror)
            _ = try Qcow2Converter.convert(source: try DiskImages.open(dir.file("src.raw")), to: image, options: o)
        case .compressedBacked:
            // A compressed base (written by qemu-img) and a compressed diff over it (by QcowIO).
            let base = makeDiskContents(size: Int(size), seed: 23)
            try writeFile(dir.file("base.raw"), base)
            try Qemu.imgOK("convert", "-c", "-O", "qcow2", "-o", "cluster_size=\(c.clusterSize)", dir.file("base.raw"), dir.file("base.qcow2"))
            mirror = base
            var rng = SeededRandom(seed: 24)
            for _ in 0..<8 {
                let at = Int(rng.below(size - 5000))
                mirror.replaceSubrange(at..<(at + 5000), with: Array(String(repeating: "changed ", count: 625).utf8))
            }
            try writeFile(dir.file("src.raw"), mirror)
            var d = o
            d.backingFile = "base.qcow2"
            d.backingFormat = "qcow2"
            _ = try Qcow2Converter.convert(source: try DiskImages.open(dir.file("src.raw")), to: image, options: d)
        }
        let img = try QcowImage(path: image, writable: true)
        var rng = SeededRandom(seed: UInt64(c.clusterSize) &* 31 &+ UInt64(c.refcountBits))
        let ops = Self.randomOps(&rng, count: 150, size: size, clusterSize: cs)
        try Self.apply(ops, to: img, mirror: &mirror)
        #expect(firstDifference(try readAll(img), mirror) == nil, "QcowIO reads back its own writes")
        let mine = try img.check()
        #expect(mine.corruptions == 0 && mine.leaks == 0, "\(mine.messages)")
        try img.close()
        try writeFile(mirrorPath, mirror)
        try Qemu.expectClean(image)
        try Qemu.expectIdentical(image, mirrorPath)
    }

    /// Enough clusters to outgrow the refcount table create() made, and a new refcount block
    /// that does not count itself.
    @Test func writesThatGrowTheRefcountTable() throws {
        let dir = try TempDir("grow")
        let image = dir.file("grow.qcow2"), mirrorPath = dir.file("mirror.raw")
        // 512 B clusters, 64-bit refcounts: 64 counts per block and 64 blocks per table cluster,
        // so the one-cluster table covers 4096 clusters (2 MiB).
        let size: UInt64 = 4 << 20
        let img = try QcowImage.create(path: image, options: .init(virtualSize: size, clusterSize: 512, refcountBits: 64))
        #expect(img.header.refcountTableClusters == 1)
        var mirror = [UInt8](repeating: 0, count: Int(size))
        var rng = SeededRandom(seed: 99)
        // Sequential 1 KiB chunks over 3 MiB, then random rewrites.
        for at in stride(from: UInt64(0), to: 3 << 20, by: 1024) {
            let b = rng.bytes(1024)
            try img.write(b, at: at)
            mirror.replaceSubrange(Int(at)..<(Int(at) + 1024), with: b)
        }
        try Self.apply(Self.randomOps(&rng, count: 100, size: size, clusterSize: 512), to: img, mirror: &mirror)
        #expect(img.header.refcountTableClusters > 1)
        #expect(try img.check().corruptions == 0)
        try img.close()
        try writeFile(mirrorPath, mirror)
        try Qemu.expectClean(image)
        try Qemu.expectIdentical(image, mirrorPath)
    }

    /// An overlay larger than its backing file: reads past the backing file's end are zeros, and
    /// writes there complete their clusters with zeros.
    @Test func overlayLargerThanItsBacking() throws {
        let dir = try TempDir("larger")
        let baseSize = (1 << 20) + 1024
        var mirror = makeDiskContents(size: baseSize, seed: 61)
        try writeFile(dir.file("base.raw"), mirror)
        try Qemu.imgOK("convert", "-O", "qcow2", "-o", "cluster_size=4096", dir.file("base.raw"), dir.file("base.qcow2"))
        let size: UInt64 = 2 << 20
        mirror += [UInt8](repeating: 0, count: Int(size) - baseSize)
        let image = dir.file("big.qcow2")
        let img = try QcowImage.create(path: image, options: .init(virtualSize: size, clusterSize: 65536, backingFile: "base.qcow2", backingFormat: "qcow2"))
        #expect(firstDifference(try readAll(img), mirror) == nil)
        var rng = SeededRandom(seed: 62)
        var ops = [Op.write(offset: UInt64(baseSize) - 100, bytes: rng.bytes(300))]
        ops += Self.randomOps(&rng, count: 60, size: size, clusterSize: 65536)
        try Self.apply(ops, to: img, mirror: &mirror)
        #expect(firstDifference(try readAll(img), mirror) == nil)
        try img.close()
        try writeFile(dir.file("mirror.raw"), mirror)
        try Qemu.expectClean(image)
        try Qemu.expectIdentical(image, dir.file("mirror.raw"))
        // Converted against the smaller base: the diff is right too.
        let diff = dir.file("diff.qcow2")
        _ = try Qcow2Converter.convert(source: try DiskImages.open(dir.file("mirror.raw")), to: diff,
                                       options: .init(clusterSize: 4096, backingFile: "base.qcow2", backingFormat: "qcow2"))
        try Qemu.expectClean(diff)
        try Qemu.expectIdentical(diff, dir.file("mirror.raw"))
    }

    @Test(arguments: [512, 65536, 2 << 20])
    func createdImagesPassQemuCheck(clusterSize: Int) throws {
        let dir = try TempDir("create")
        let plain = dir.file("plain.qcow2"), backed = dir.file("backed.qcow2")
        try QcowImage.create(path: plain, options: .init(virtualSize: 64 << 20, clusterSize: clusterSize)).close()
        try Qemu.expectClean(plain)
        try QcowImage.create(path: backed, options: .init(virtualSize: 0, clusterSize: clusterSize,
                                                          backingFile: "plain.qcow2", backingFormat: "qcow2")).close()
        try Qemu.expectClean(backed)
        let info = try Qemu.img("info", "--output=json", backed)
        #expect(info.stdout.contains("\"virtual-size\": \(64 << 20)"))
        #expect(info.stdout.contains("\"cluster-size\": \(clusterSize)"))
        #expect(info.stdout.contains("\"backing-filename\": \"plain.qcow2\""))
        #expect(info.stdout.contains("\"compat\": \"1.1\""))
    }
}

/// What `QcowImage` refuses to write, with the typed error.
@Suite struct WriteRefusalTests {
    @Test func refusals() throws {
        let dir = try TempDir("refuse")
        let p = dir.file("r.qcow2")
        let img = try QcowImage.create(path: p, options: .init(virtualSize: 1 << 20, clusterSize: 4096))
        #expect(throws: QcowError.outOfRange(path: p, offset: (1 << 20) - 2, length: 4, virtualSize: 1 << 20)) {
            try img.write([1, 2, 3, 4], at: (1 << 20) - 2)
        }
        #expect(throws: QcowError.invalidArgument("\(p): zeroing needs whole clusters")) {
            try img.writeZeroes(at: 512, length: 4096)
        }
        try img.close()
        let ro = try QcowImage(path: p)
        #expect(throws: QcowError.readOnly(path: p, reason: "opened read-only")) { try ro.write([1], at: 0) }
        // The dirty bit (lazy refcounts left unclean): readable, not writable.
        try patchBE64(p, at: 72, 1)
        #expect(try QcowImage(path: p).findings.dirty)
        #expect { try QcowImage(path: p, writable: true) } throws: { e in
            if case .readOnly = e as? QcowError { return true }
            return false
        }
        // Version 2: readable, not writable here.
        let v2 = dir.file("v2.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "compat=0.10", v2, "1M")
        #expect(try QcowImage(path: v2).header.version == 2)
        #expect(throws: QcowError.readOnly(path: v2, reason: "version 2 images are read only here")) { try QcowImage(path: v2, writable: true) }
        // Bad create options.
        #expect(throws: QcowError.self) { try QcowImage.create(path: dir.file("x.qcow2"), options: .init(virtualSize: 1 << 20, clusterSize: 3000)) }
        #expect(throws: QcowError.self) { try QcowImage.create(path: dir.file("y.qcow2"), options: .init(virtualSize: 1 << 20, refcountBits: 128)) }
        #expect(throws: QcowError.self) { try QcowImage.create(path: dir.file("z.qcow2"), options: .init(virtualSize: 1 << 50, clusterSize: 512)) }
    }
}
