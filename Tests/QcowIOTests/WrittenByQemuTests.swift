import Foundation
@testable import QcowIO
import Testing
import TestSupport

/// Images written by qemu-img and qemu-io read back through QcowIO byte for byte as
/// `qemu-img convert -O raw` reads them, and QcowIO's check counts as `qemu-img check` does.
@Suite struct WrittenByQemuTests {
    /// Reads the image through `DiskImages.open` and compares every byte with qemu's flattening.
    func expectSameAsQemu(_ image: String, in dir: TempDir, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let qemu = try Qemu.flatten(image, to: dir.file("flat-\((image as NSString).lastPathComponent).raw"))
        let mine = try readAll(try DiskImages.open(image))
        #expect(mine.count == qemu.count, sourceLocation: sourceLocation)
        let d = firstDifference(mine, qemu)
        #expect(d == nil, "\(image): first difference at guest offset \(d ?? -1)", sourceLocation: sourceLocation)
    }

    func expectCheckAgrees(_ image: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let q = try Qemu.check(image)
        let mine = try QcowImage(path: image).check()
        #expect(mine.leaks == q.leaks && mine.corruptions == q.corruptions && mine.exitCode == q.status,
                "\(image): QcowIO \(mine.corruptions) corruptions \(mine.leaks) leaks exit \(mine.exitCode); qemu-img \(q)",
                sourceLocation: sourceLocation)
    }

    @Test(arguments: [4096, 65536, 2 << 20])
    func compressedConvertReadsBack(clusterSize: Int) throws {
        let dir = try TempDir("qemu-c")
        let raw = dir.file("src.raw"), img = dir.file("c.qcow2")
        let contents = makeDiskContents(size: 5 << 20, seed: 40 + UInt64(clusterSize))
        try writeFile(raw, contents)
        try Qemu.imgOK("convert", "-c", "-O", "qcow2", "-o", "cluster_size=\(clusterSize)", raw, img)
        let q = try QcowImage(path: img)
        #expect(try q.check().compressedClusters > 0)
        try expectSameAsQemu(img, in: dir)
        #expect(try readAll(q) == contents)
        try expectCheckAgrees(img)
    }

    struct ChainCase: Sendable, CustomTestStringConvertible {
        var clusterSize: Int
        var compat: String
        var refcountBits: Int
        var rawBase: Bool
        var testDescription: String {
            "\(clusterSize) B clusters, compat \(compat), \(refcountBits)-bit refcounts" + (rawBase ? ", raw base" : "")
        }
    }

    static let chainCases: [ChainCase] = [
        .init(clusterSize: 4096, compat: "1.1", refcountBits: 16, rawBase: false),
        .init(clusterSize: 65536, compat: "1.1", refcountBits: 1, rawBase: true),
        .init(clusterSize: 65536, compat: "0.10", refcountBits: 16, rawBase: false),
        .init(clusterSize: 2 << 20, compat: "1.1", refcountBits: 64, rawBase: false),
    ]

    /// A chain four deep: base, mid, upper, top, each written by qemu-io with patterns, zero
    /// writes (over allocated and unallocated clusters, to hide data below), and compressed
    /// writes, partial clusters included.
    @Test(arguments: chainCases)
    func backedChainReadsBack(_ c: ChainCase) throws {
        let dir = try TempDir("qemu-chain")
        let cs = c.clusterSize
        // Regions in units of u (at least a cluster): partial writes in units 0-3, compressed
        // clusters in 4-6 (qemu compresses only into unallocated clusters), a zero write over the
        // base's data in 8, whole clusters and zero writes over them from 9 on.
        let size = max(4 << 20, 18 * cs)
        let u = size / 18 / cs * cs
        let opts = "cluster_size=\(cs),compat=\(c.compat),refcount_bits=\(c.refcountBits)"
        let v3 = c.compat == "1.1"
        let base: String, baseFormat: String
        if c.rawBase {
            base = dir.file("base.raw"); baseFormat = "raw"
            try writeFile(base, makeDiskContents(size: size, seed: 50))
        } else {
            base = dir.file("base.qcow2"); baseFormat = "qcow2"
            try writeFile(dir.file("seed.raw"), makeDiskContents(size: size, seed: 50))
            try Qemu.imgOK("convert", "-O", "qcow2", "-o", opts, dir.file("seed.raw"), base)
        }
        var below = (base as NSString).lastPathComponent
        var belowFormat = baseFormat
        var links: [String] = []
        for (i, name) in ["mid", "upper", "top"].enumerated() {
            let img = dir.file("\(name).qcow2")
            try Qemu.imgOK("create", "-f", "qcow2", "-o", opts, "-b", below, "-F", belowFormat, img)
            let whole = (9 + 3 * i) * u
            var cmds = [
                "write -c -P 0x5\(i) \((4 + i) * u) \(cs)",                                // a compressed cluster
                "write -P 0x\(String(0x11 * (i + 1), radix: 16)) \(i * u + 100) \(cs)",     // partial, across a boundary
                "write -P 0x\(String(0x21 + i, radix: 16)) \(whole) \(2 * cs)",             // whole clusters
                "write -P 0x7\(i) \(size - cs / 2) \(cs / 2)",                              // the tail
            ]
            if v3 {
                cmds += [
                    "write -z \(8 * u) \(cs)",          // zero over data below (plain zero)
                    "write -z \(whole) \(cs)",          // zero over this image's own cluster (zero, allocated)
                    "write -z -u \(whole + cs) \(cs)",  // zero, unmapped
                ]
            }
            try Qemu.io(img, cmds)
            links.append(img)
            below = "\(name).qcow2"
            belowFormat = "qcow2"
        }
        // A fourth overlay that rewrites part of the compressed cluster below it.
        let top2 = dir.file("top2.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", opts, "-b", "top.qcow2", "-F", "qcow2", top2)
        try Qemu.io(top2, ["write -P 0x99 \(6 * u + 10) 20"])
        links.append(top2)

        let opened = try DiskImages.open(top2)
        #expect(opened.chain.count == 5)
        for img in links {
            try expectSameAsQemu(img, in: dir)
            try expectCheckAgrees(img)
        }
        if !c.rawBase { try expectCheckAgrees(base) }

        // The chain as a source: flattened into one compressed image, and diffed against its
        // middle (zero clusters in the source over data in the base must come out right).
        let flat = dir.file("flat.qcow2"), diff = dir.file("diff.qcow2")
        var o = Qcow2ConvertOptions(clusterSize: cs, compress: true)
        o.threads = 2
        _ = try Qcow2Converter.convert(source: opened, to: flat, options: o)
        try Qemu.expectClean(flat)
        try Qemu.expectIdentical(flat, top2)
        o.backingFile = "mid.qcow2"
        o.backingFormat = "qcow2"
        _ = try Qcow2Converter.convert(source: opened, to: diff, options: o)
        try Qemu.expectClean(diff)
        try Qemu.expectIdentical(diff, top2)
    }

    /// `qemu-img check` counts and QcowIO's agree on a clean qemu-made image and on one with
    /// refcounts edited: a leak, a missing reference, and COPIED flags that no longer match.
    enum Damage: String, CaseIterable, Sendable {
        case none
        case bumpHeader, zeroHeader
        case bumpL2Table, zeroL2Table
        case bumpData, zeroData
        case bumpRefcountBlock, zeroRefcountBlock
        case leakAndCorruption
    }

    @Test(arguments: Damage.allCases)
    func checkAgreesWithQemu(_ damage: Damage) throws {
        let dir = try TempDir("check")
        let img = dir.file("img.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", img, "4M")
        try Qemu.io(img, ["write -P 0x61 0 64k", "write -P 0x62 1M 8k", "write -c -P 0x63 2M 4k"])
        let q = try QcowImage(path: img)
        let cs = UInt64(q.clusterSize)
        let l2Cluster = (try readBE64(img, at: q.header.l1TableOffset) & Qcow2.offsetMask) / cs
        let dataCluster = try q.l2Entry(forGuest: 1 << 20).clusterOffset / cs
        let blockCluster = (try readBE64(img, at: q.header.refcountTableOffset) & ~UInt64(0x1FF)) / cs
        try q.close()
        switch damage {
        case .none: break
        case .bumpHeader: try setRefcount(img, cluster: 0, to: 2)
        case .zeroHeader: try setRefcount(img, cluster: 0, to: 0)
        case .bumpL2Table: try setRefcount(img, cluster: l2Cluster, to: 2)
        case .zeroL2Table: try setRefcount(img, cluster: l2Cluster, to: 0)
        case .bumpData: try setRefcount(img, cluster: dataCluster, to: 5)
        case .zeroData: try setRefcount(img, cluster: dataCluster, to: 0)
        case .bumpRefcountBlock: try setRefcount(img, cluster: blockCluster, to: 2)
        case .zeroRefcountBlock: try setRefcount(img, cluster: blockCluster, to: 0)
        case .leakAndCorruption:
            try setRefcount(img, cluster: 0, to: 3)
            try setRefcount(img, cluster: dataCluster + 1, to: 0)
        }
        let qemu = try Qemu.check(img)
        let mine = try QcowImage(path: img).check()
        #expect(mine.leaks == qemu.leaks, "leaks: QcowIO \(mine.messages); qemu-img \(qemu)")
        #expect(mine.corruptions == qemu.corruptions, "corruptions: QcowIO \(mine.messages); qemu-img \(qemu)")
        #expect(mine.exitCode == qemu.status, "exit: QcowIO \(mine.exitCode); qemu-img \(qemu)")
        if damage == .none { #expect(qemu.status == 0) } else { #expect(qemu.status != 0) }
    }

    /// A qemu-made image with an internal snapshot: readable, its snapshot listed, its clusters
    /// counted (shared clusters have refcount 2 and no COPIED flag).
    @Test func imageWithSnapshot() throws {
        let dir = try TempDir("snap")
        let img = dir.file("snap.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", img, "1M")
        try Qemu.io(img, ["write -P 0x10 0 16k"])
        try Qemu.imgOK("snapshot", "-c", "first", img)
        try Qemu.io(img, ["write -P 0x20 4k 4k"])
        let q = try QcowImage(path: img)
        #expect(q.snapshots.map(\.name) == ["first"])
        try expectSameAsQemu(img, in: dir)
        try expectCheckAgrees(img)
        #expect(throws: QcowError.readOnly(path: img, reason: "the image has 1 internal snapshots")) {
            try QcowImage(path: img, writable: true)
        }
    }

    /// The allocation map of a qemu-made chain matches `qemu-img map` extent by extent.
    @Test func blockStatusMatchesQemuMap() throws {
        let dir = try TempDir("map")
        let base = dir.file("base.qcow2"), top = dir.file("top.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", base, "1M")
        try Qemu.io(base, ["write -P 1 0 64k", "write -c -P 2 128k 4k", "write -z 192k 8k"])
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.qcow2", "-F", "qcow2", top)
        try Qemu.io(top, ["write -P 3 8k 8k", "write -z 32k 4k", "write -P 4 512k 4k"])
        let r = try Qemu.img("map", "--output=json", top)
        let qemu = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        let map = try AllocationMap.compute(try DiskImages.open(top))
        // Byte by byte (in 4 KiB steps): the same depth, data and zero flags.
        func qemuAt(_ off: UInt64) -> (depth: Int?, data: Bool, zero: Bool) {
            for e in qemu {
                let s = (e["start"] as! NSNumber).uint64Value, l = (e["length"] as! NSNumber).uint64Value
                if off >= s && off < s + l {
                    let present = e["present"] as? Bool ?? true
                    return (present ? e["depth"] as? Int : nil, e["data"] as! Bool, e["zero"] as! Bool)
                }
            }
            return (nil, false, true)
        }
        func mineAt(_ off: UInt64) -> (depth: Int?, data: Bool, zero: Bool) {
            for e in map.extents where off >= e.start && off < e.start + e.length { return (e.depth, e.data, e.zero) }
            return (nil, false, true)
        }
        for off in stride(from: UInt64(0), to: 1 << 20, by: 4096) {
            let a = qemuAt(off), b = mineAt(off)
            #expect(a.depth == b.depth && a.data == b.data && a.zero == b.zero, "offset \(off): qemu \(a), QcowIO \(b)")
        }
    }
}
