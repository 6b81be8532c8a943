@testable import QcowIO
import Testing
import TestSupport

/// Pure planning and encoding: geometry, the header's bytes, table entries, refcount blocks.
@Suite struct GeometryTests {
    @Test(arguments: [
        // (cluster bits, virtual size, expected L1 entries)
        (9, UInt64(0), UInt64(0)),
        (9, UInt64(1), UInt64(1)),
        (9, UInt64(32 * 1024), UInt64(1)), // one L2 table of 64 entries maps 32 KiB
        (9, UInt64(32 * 1024 + 1), UInt64(2)),
        (12, UInt64(2 << 20), UInt64(1)), // 512 entries x 4 KiB
        (12, UInt64(2 << 20) + 512, UInt64(2)),
        (16, UInt64(512 << 20), UInt64(1)), // 8192 x 64 KiB
        (16, UInt64(10) << 30, UInt64(20)),
        (21, UInt64(1) << 40, UInt64(2)), // 262144 x 2 MiB = 512 GiB per L2 table
        // Sizes near 2^64: the rounding up overflowed (issue 13).
        (9, UInt64.max, UInt64(562_949_953_421_312)), // 2^49
        (21, UInt64.max, UInt64(33_554_432)), // 2^25
    ])
    func l1Entries(clusterBits: Int, size: UInt64, expected: UInt64) {
        let g = Qcow2Geometry(clusterBits: clusterBits, refcountOrder: 4, virtualSize: size)
        #expect(g.l1Entries == expected)
        #expect(g.l2Entries == g.clusterSize / 8)
        #expect(g.bytesPerL2 == UInt64(g.clusterSize) * UInt64(g.l2Entries))
    }

    @Test func guestOffsetSplitsIntoIndices() {
        let g = Qcow2Geometry(clusterBits: 16, refcountOrder: 4, virtualSize: 1 << 40)
        let offset: UInt64 = 3 * g.bytesPerL2 + 17 * 65536 + 1234
        #expect(g.l1Index(offset) == 3)
        #expect(g.l2Index(offset) == 17)
        #expect(g.offsetInCluster(offset) == 1234)
        #expect(g.guestClusters == (1 << 40) / 65536)
        #expect(g.clusters(forBytes: 65537) == 2)
    }

    @Test(arguments: [9, 12, 16, 21], [0, 3, 4, 6])
    func refcountMetadataCoversItself(clusterBits: Int, refcountOrder: Int) {
        let g = Qcow2Geometry(clusterBits: clusterBits, refcountOrder: refcountOrder, virtualSize: 0)
        for clusters: UInt64 in [1, 2, 100, UInt64(g.refcountsPerBlock) - 1, UInt64(g.refcountsPerBlock), 100_000] {
            let m = g.refcountMetadata(forClusters: clusters)
            let total = clusters + m.blocks + m.tableClusters
            let perBlock = UInt64(g.refcountsPerBlock)
            // Enough blocks for everything, themselves included, and no more than needed.
            #expect(m.blocks * perBlock >= total, "clusters \(clusters): \(m)")
            #expect((m.blocks - 1) * perBlock < total, "clusters \(clusters): \(m) is more than needed")
            // Enough table entries for the blocks, and at least one table cluster.
            #expect(m.tableClusters >= 1)
            #expect(m.tableClusters * UInt64(g.clusterSize / 8) >= m.blocks)
            #expect((m.tableClusters - 1) * UInt64(g.clusterSize / 8) < max(m.blocks, 1))
        }
    }

    @Test func refcountMetadataKnownValues() {
        // 64 KiB clusters, 16-bit refcounts: one block counts 32768 clusters.
        let g = Qcow2Geometry(clusterBits: 16, refcountOrder: 4, virtualSize: 0)
        #expect(g.refcountsPerBlock == 32768)
        #expect(g.refcountMetadata(forClusters: 3) == (blocks: 1, tableClusters: 1))
        #expect(g.refcountMetadata(forClusters: 32766) == (blocks: 1, tableClusters: 1))
        // 32767 + 1 block + 1 table = 32769: a second block, which fits in the second block.
        #expect(g.refcountMetadata(forClusters: 32767) == (blocks: 2, tableClusters: 1))
        // 512-byte clusters, 64-bit refcounts: 64 per block, 64 table entries per cluster.
        let s = Qcow2Geometry(clusterBits: 9, refcountOrder: 6, virtualSize: 0)
        #expect(s.refcountsPerBlock == 64)
        let m = s.refcountMetadata(forClusters: 64 * 64)
        #expect(m.blocks == 66 && m.tableClusters == 2)
    }
}

@Suite struct HeaderTests {
    static func sample(version: UInt32) -> Qcow2Header {
        var h = Qcow2Header()
        h.version = version
        h.backingFileOffset = 0x1F8
        h.backingFileSize = 12
        h.clusterBits = 12
        h.size = 0x1_2345_6000
        h.l1Size = 37
        h.l1TableOffset = 0x3000
        h.refcountTableOffset = 0x1000
        h.refcountTableClusters = 2
        h.snapshotCount = 1
        h.snapshotsOffset = 0x9000
        if version == 3 {
            h.incompatibleFeatures = [.dirty]
            h.compatibleFeatures = [.lazyRefcounts]
            h.autoclearFeatures = 2
            h.refcountOrder = 6
            h.headerLength = 112
        } else {
            h.incompatibleFeatures = []
            h.compatibleFeatures = []
            h.refcountOrder = 4
            h.headerLength = 72
        }
        return h
    }

    @Test(arguments: [UInt32(2), 3])
    func roundTrip(version: UInt32) throws {
        let h = Self.sample(version: version)
        let bytes = h.serialized()
        #expect(bytes.count == (version == 2 ? 72 : 112))
        #expect(Array(bytes[0..<4]) == [0x51, 0x46, 0x49, 0xFB])
        // Big-endian, field by field.
        #expect(Array(bytes[24..<32]) == [0, 0, 0, 1, 0x23, 0x45, 0x60, 0])
        let back = try Qcow2Header.parse(bytes, path: "h")
        #expect(back == h)
        #expect(back.serialized() == bytes)
    }

    @Test func compressionTypeByteOnlyWhenHeaderIsLongEnough() throws {
        var h = Self.sample(version: 3)
        h.headerLength = 104
        let short = h.serialized()
        #expect(short.count == 104)
        #expect(try Qcow2Header.parse(short, path: "h").compressionType == 0)
        h.headerLength = 112
        h.compressionType = 1
        h.incompatibleFeatures.insert(.compressionType)
        #expect(try Qcow2Header.parse(h.serialized(), path: "h").compressionType == 1)
    }

    @Test func parseRefusesShortAndForeignBytes() {
        let h = Self.sample(version: 3).serialized()
        #expect(throws: QcowError.truncated(path: "h", what: "header", offset: 0, needed: 72, fileSize: 71)) {
            try Qcow2Header.parse(Array(h[0..<71]), path: "h")
        }
        #expect(throws: QcowError.truncated(path: "h", what: "version 3 header", offset: 0, needed: 104, fileSize: 80)) {
            try Qcow2Header.parse(Array(h[0..<80]), path: "h")
        }
        var bad = h
        bad[3] = 0xFC
        #expect(throws: QcowError.badMagic(path: "h", found: 0x5146_49FC)) { try Qcow2Header.parse(bad, path: "h") }
        var v4 = h
        v4.putBE32(4, at: 4)
        #expect(throws: QcowError.invalidField(path: "h", field: "version", value: 4, reason: "only versions 2 and 3 exist")) {
            try Qcow2Header.parse(v4, path: "h")
        }
        var odd = h
        odd.putBE32(108, at: 100)
        #expect {
            try Qcow2Header.parse(odd, path: "h")
        } throws: { e in
            if case let .invalidField(_, field, value, _) = e as? QcowError { return field == "header_length" && value == 108 }
            return false
        }
    }

    @Test func extensionsRoundTrip() throws {
        let exts = [
            Qcow2HeaderExtension(type: Qcow2.ExtensionType.backingFormat.rawValue, data: Array("qcow2".utf8)),
            Qcow2HeaderExtension(type: Qcow2.ExtensionType.featureNameTable.rawValue,
                                 data: Qcow2FeatureName.serializeTable(Qcow2FeatureName.standard)),
            Qcow2HeaderExtension(type: 0x1234_5678, data: []),
        ]
        let bytes = Qcow2HeaderExtension.serializeAll(exts)
        #expect(bytes.count % 8 == 0)
        var cluster = [UInt8](repeating: 0xAA, count: 112) + bytes
        cluster += [UInt8](repeating: 0, count: 4096 - cluster.count)
        let back = try Qcow2HeaderExtension.parseAll(cluster, start: 112, path: "h")
        #expect(back == exts)
        #expect(Qcow2FeatureName.parseTable(back[1].data) == Qcow2FeatureName.standard)
    }

    @Test func extensionRunningPastTheClusterIsRefused() {
        var cluster = [UInt8](repeating: 0, count: 512)
        cluster.putBE32(0xE279_2ACA, at: 112)
        cluster.putBE32(1000, at: 116)
        #expect {
            try Qcow2HeaderExtension.parseAll(cluster, start: 112, path: "h")
        } throws: { e in
            if case let .invalidEntry(_, table, _, value, _) = e as? QcowError { return table == "header extension" && value == 1000 }
            return false
        }
        // No end extension before the cluster ends.
        let full = [UInt8](repeating: 0xFF, count: 120)
        #expect(throws: QcowError.self) { try Qcow2HeaderExtension.parseAll(full, start: 112, path: "h") }
    }
}

@Suite struct EntryTests {
    @Test(arguments: [9, 12, 16, 21])
    func compressedEntryRoundTrip(clusterBits: Int) {
        let cs = 1 << clusterBits
        let cases: [(offset: UInt64, bytes: Int)] = [
            (UInt64(cs) * 5, 1), (UInt64(cs) * 5 + 7, 100), (UInt64(cs) * 7 + 511, cs - 1),
            (UInt64(1) << 40 | 0x1FF, cs / 2), (UInt64(cs) * 3 + 512, 513),
        ]
        for c in cases {
            let e = L2Entry.compressed(offset: c.offset, bytes: c.bytes, clusterBits: clusterBits)
            #expect(e.isCompressed)
            #expect(!e.isCopied)
            #expect(!e.isZero)
            #expect(!e.isUnallocated)
            #expect(e.clusterOffset == 0)
            #expect(e.compressedOffset(clusterBits: clusterBits) == c.offset)
            let r = e.compressedRange(clusterBits: clusterBits)
            #expect(r.start == c.offset & ~511)
            #expect(r.length % 512 == 0)
            // The range holds the data and ends in the sector of its last byte, as QEMU counts it.
            #expect(r.start + r.length >= c.offset + UInt64(c.bytes))
            #expect(r.start + r.length - 512 < c.offset + UInt64(c.bytes))
        }
    }

    @Test func compressedEntryMatchesQemuEncoding() {
        // QEMU: sectors field = (end - 1) / 512 - offset / 512, at bit 62 - (cluster_bits - 8).
        let e = L2Entry.compressed(offset: 0x5_0123, bytes: 1000, clusterBits: 16)
        let additional = (UInt64(0x5_0123) + 1000 - 1) / 512 - UInt64(0x5_0123) / 512
        #expect(e.raw == (UInt64(1) << 62) | (additional << 54) | 0x5_0123)
    }

    @Test func standardEntryFlags() {
        let e = L2Entry.standard(offset: 0x3_0000, copied: true)
        #expect(e.clusterOffset == 0x3_0000 && e.isCopied && !e.isZero && !e.isCompressed && !e.isUnallocated)
        let z = L2Entry.standard(offset: 0, copied: false, zero: true)
        #expect(z.isZero && !z.isUnallocated && z.clusterOffset == 0)
        #expect(L2Entry.unallocated.isUnallocated)
        #expect(L2Entry(raw: 0x3_0000 | 2).raw & L2Entry.standardReservedMask != 0)
        #expect(L2Entry(raw: (1 << 56) | 0x3_0000).raw & L2Entry.standardReservedMask != 0)
        let l1 = L1Entry(l2Offset: 0x7_0000, copied: true)
        #expect(l1.l2Offset == 0x7_0000 && l1.isCopied && l1.reservedBits == 0)
        #expect(L1Entry(raw: 0x7_0000 | 1).reservedBits == 1)
        #expect(L1Entry(raw: (1 << 60) | 0x7_0000).reservedBits != 0)
        #expect(RefcountTableEntry(raw: 0x4_0000 | 3).reservedBits == 3)
    }

    @Test(arguments: 0...6)
    func refcountBlockGetSet(order: Int) {
        let cs = 512
        var block = RefcountBlock(clusterSize: cs, refcountOrder: order)
        let bits = 1 << order
        #expect(block.count == cs * 8 / bits)
        #expect(block.maxValue == (bits == 64 ? UInt64.max : (UInt64(1) << UInt64(bits)) - 1))
        var rng = SeededRandom(seed: UInt64(order) + 1)
        var model = [UInt64](repeating: 0, count: block.count)
        for _ in 0..<2000 {
            let i = Int(rng.below(UInt64(block.count)))
            let v = rng.next() & block.maxValue
            block[i] = v
            model[i] = v
        }
        for i in 0..<block.count { #expect(block[i] == model[i], "order \(order) index \(i)") }
        // Neighbours are untouched by a set.
        var b = RefcountBlock(clusterSize: cs, refcountOrder: order)
        b[1] = block.maxValue
        #expect(b[0] == 0 && b[1] == block.maxValue && b[2] == 0)
        // Big-endian for whole bytes; below a byte, entry 0 in the least significant bits
        // (qcow2 spec: "bit 0 means the least significant bit"; QEMU's get_refcount_ro0..2).
        var c = RefcountBlock(clusterSize: cs, refcountOrder: order)
        c[0] = 1
        switch bits {
        case 1, 2, 4: #expect(c.bytes[0] == 0x01)
        default: #expect(c.bytes[bits / 8 - 1] == 1 && c.bytes[0..<(bits / 8 - 1)].allSatisfy { $0 == 0 })
        }
        if bits < 8 {
            var d = RefcountBlock(clusterSize: cs, refcountOrder: order)
            d[1] = 1
            #expect(d.bytes[0] == UInt8(1 << bits), "entry 1 sits just above entry 0")
        }
    }

    @Test func deflateRoundTripAndLimit() throws {
        var rng = SeededRandom(seed: 9)
        let text = Array(String(repeating: "qcow2 cluster ", count: 5000).utf8.prefix(65536))
        let z = try #require(text.withUnsafeBytes { Deflate.compress($0, limit: 65535) })
        #expect(z.count < 4096)
        var out = [UInt8](repeating: 0, count: 65536)
        // Sector padding after the stream is ignored.
        let padded = z + [UInt8](repeating: 0, count: 300)
        #expect(padded.withUnsafeBytes { i in out.withUnsafeMutableBytes { Deflate.decompress(i, into: $0) } })
        #expect(out == text)
        let noise = rng.bytes(65536)
        #expect(noise.withUnsafeBytes { Deflate.compress($0, limit: 65535) } == nil)
        #expect(!rng.bytes(100).withUnsafeBytes { i in out.withUnsafeMutableBytes { Deflate.decompress(i, into: $0) } })
    }
}

/// Sizes and widths past what qcow2 holds are refused with a reason, not an arithmetic trap.
@Test func aVirtualSizeOrRefcountWidthPastTheFormatIsRefused() throws {
    let dir = try TempDir("create-limits")
    for size in [UInt64.max, UInt64.max - 1, UInt64(1) << 62] {
        #expect { try QcowImage.create(path: dir.file("big.qcow2"), options: Qcow2CreateOptions(virtualSize: size)) } throws: { e in
            "\(e)".contains("needs an L1 table beyond")
        }
    }
    for bits in [Int.min, -16, 0, 128] {
        #expect(throws: QcowError.self) { try Qcow2CreateOptions(virtualSize: 1 << 20, refcountBits: bits).validated() }
    }
}
