import Foundation
@testable import QcowIO
import Testing
import TestSupport

/// Hostile and broken images: each gives its typed `QcowError`, never a crash, never a hang.
@Suite struct MalformedInputTests {
    /// A valid 4 MiB image with 64 KiB clusters and two data clusters (guest 0 and 1 MiB), and where
    /// its structures are.
    struct Base {
        let path: String
        let header: Qcow2Header
        let fileSize: UInt64
        /// L1[0], the L2 table it points at, and L2[0].
        let l1Entry: UInt64
        let l2Offset: UInt64
        let l2Entry: UInt64

        init(_ dir: TempDir, name: String = "base.qcow2") throws {
            path = dir.file(name)
            let img = try QcowImage.create(path: path, options: .init(virtualSize: 4 << 20))
            try img.write([UInt8](repeating: 0x5A, count: 65536), at: 0)
            try img.write([UInt8](repeating: 0xA5, count: 1000), at: 1 << 20)
            try img.close()
            let opened = try QcowImage(path: path)
            header = opened.header
            fileSize = try opened.file.size()
            l1Entry = try readBE64(path, at: header.l1TableOffset)
            l2Offset = l1Entry & Qcow2.offsetMask
            l2Entry = try readBE64(path, at: l2Offset)
        }
    }

    /// One way of breaking an image, and the error it must give.
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        /// Breaks the image at the path (a fresh copy of `Base`) and returns the path to open.
        let breakImage: @Sendable (TempDir, Base) throws -> String
        let expected: @Sendable (QcowError) -> Bool
        var testDescription: String { name }
    }

    static func field(_ name: String, _ value: UInt64? = nil, reason: String? = nil) -> @Sendable (QcowError) -> Bool {
        { e in
            guard case let .invalidField(_, f, v, r) = e else { return false }
            return f == name && (value == nil || v == value) && (reason == nil || r.contains(reason!))
        }
    }

    static func entry(_ table: String, reason: String) -> @Sendable (QcowError) -> Bool {
        { e in
            guard case let .invalidEntry(_, t, _, _, r) = e else { return false }
            return t == table && r.contains(reason)
        }
    }

    static func feature(_ text: String) -> @Sendable (QcowError) -> Bool {
        { e in
            guard case let .unsupportedFeature(_, f) = e else { return false }
            return f.contains(text)
        }
    }

    static let cases: [Case] = [
        Case(name: "empty file", breakImage: { _, b in try truncateFile(b.path, to: 0); return b.path }) {
            if case let .truncated(_, what, _, _, size) = $0 { return what == "header" && size == 0 }
            return false
        },
        Case(name: "truncated header", breakImage: { _, b in try truncateFile(b.path, to: 60); return b.path }) {
            if case let .truncated(_, what, _, needed, size) = $0 { return what == "header" && needed == 72 && size == 60 }
            return false
        },
        Case(name: "truncated version 3 header", breakImage: { _, b in try truncateFile(b.path, to: 90); return b.path }) {
            if case let .truncated(_, what, _, needed, size) = $0 { return what == "version 3 header" && needed == 104 && size == 90 }
            return false
        },
        Case(name: "garbage", breakImage: { d, _ in
            var rng = SeededRandom(seed: 77)
            let p = d.file("garbage.img")
            try writeFile(p, rng.bytes(70_000))
            return p
        }) {
            if case .badMagic = $0 { return true }
            return false
        },
        Case(name: "bad magic", breakImage: { _, b in try patch(b.path, at: 0, [0x51, 0x46, 0x49, 0x00]); return b.path }) {
            if case let .badMagic(_, found) = $0 { return found == 0x5146_4900 }
            return false
        },
        Case(name: "version 4", breakImage: { _, b in try patchBE32(b.path, at: 4, 4); return b.path }, expected: field("version", 4)),
        Case(name: "cluster_bits 30", breakImage: { _, b in try patchBE32(b.path, at: 20, 30); return b.path }, expected: field("cluster_bits", 30)),
        Case(name: "cluster_bits 8", breakImage: { _, b in try patchBE32(b.path, at: 20, 8); return b.path }, expected: field("cluster_bits", 8)),
        Case(name: "refcount_order 7", breakImage: { _, b in try patchBE32(b.path, at: 96, 7); return b.path }, expected: field("refcount_order", 7)),
        Case(name: "header_length beyond the cluster", breakImage: { _, b in try patchBE32(b.path, at: 100, 1 << 17); return b.path },
             expected: field("header_length", 1 << 17)),
        Case(name: "L1 beyond end of file", breakImage: { _, b in
            try patchBE64(b.path, at: 40, (b.fileSize / 65536 + 8) * 65536); return b.path
        }, expected: field("l1_table_offset", reason: "beyond the end of file")),
        Case(name: "L1 running past end of file", breakImage: { _, b in
            try patchBE32(b.path, at: 36, UInt32(b.fileSize / 8)); return b.path
        }, expected: field("l1_table_offset", reason: "beyond the end of file")),
        Case(name: "L1 at offset 0", breakImage: { _, b in try patchBE64(b.path, at: 40, 0); return b.path },
             expected: field("l1_table_offset", 0, reason: "header cluster")),
        Case(name: "oversized L1", breakImage: { _, b in try patchBE32(b.path, at: 36, 0x1000_0000); return b.path },
             expected: field("l1_size", 0x1000_0000, reason: "exceeds")),
        Case(name: "L1 too small for the virtual size", breakImage: { _, b in try patchBE64(b.path, at: 24, 1 << 40); return b.path },
             expected: field("l1_size", 1, reason: "too small")),
        Case(name: "oversized refcount table", breakImage: { _, b in try patchBE32(b.path, at: 56, 0x10_0000); return b.path },
             expected: field("refcount_table_clusters", 0x10_0000, reason: "exceeds")),
        Case(name: "no refcount table", breakImage: { _, b in try patchBE32(b.path, at: 56, 0); return b.path },
             expected: field("refcount_table_clusters", 0)),
        Case(name: "refcount table beyond end of file", breakImage: { _, b in
            try patchBE64(b.path, at: 48, (b.fileSize / 65536 + 1) * 65536); return b.path
        }, expected: field("refcount_table_offset", reason: "beyond the end of file")),
        Case(name: "unaligned L1 table offset", breakImage: { _, b in try patchBE64(b.path, at: 40, b.header.l1TableOffset + 512); return b.path },
             expected: field("l1_table_offset", reason: "not aligned")),
        Case(name: "unaligned refcount table offset", breakImage: { _, b in try patchBE64(b.path, at: 48, 65536 + 8); return b.path },
             expected: field("refcount_table_offset", reason: "not aligned")),
        Case(name: "too many snapshots", breakImage: { _, b in try patchBE32(b.path, at: 60, 0x10_0000); return b.path },
             expected: field("nb_snapshots", 0x10_0000)),
        Case(name: "snapshot table beyond end of file", breakImage: { _, b in
            try patchBE32(b.path, at: 60, 2); try patchBE64(b.path, at: 64, 1 << 30); return b.path
        }, expected: field("snapshots_offset", reason: "beyond the end of file")),
        Case(name: "backing file name past the header cluster", breakImage: { _, b in
            try patchBE64(b.path, at: 8, 65536 - 4); try patchBE32(b.path, at: 16, 100); return b.path
        }, expected: field("backing_file_offset", 65536 - 4)),
        Case(name: "backing file name too long", breakImage: { _, b in
            try patchBE64(b.path, at: 8, 512); try patchBE32(b.path, at: 16, 5000); return b.path
        }, expected: field("backing_file_size", 5000)),
        Case(name: "unknown incompatible feature bit", breakImage: { _, b in try patchBE64(b.path, at: 72, 1 << 5); return b.path },
             expected: feature("unknown incompatible feature bits 0x20")),
        Case(name: "external data file bit", breakImage: { _, b in try patchBE64(b.path, at: 72, 1 << 2); return b.path },
             expected: feature("external data file")),
        Case(name: "extended L2 bit", breakImage: { _, b in try patchBE64(b.path, at: 72, 1 << 4); return b.path },
             expected: feature("extended L2")),
        Case(name: "compression type without its feature bit", breakImage: { _, b in try patch(b.path, at: 104, [1]); return b.path },
             expected: field("compression_type", 1, reason: "disagrees")),
        Case(name: "zstd compression type", breakImage: { _, b in
            try patchBE64(b.path, at: 72, 1 << 3); try patch(b.path, at: 104, [1]); return b.path
        }, expected: feature("zstd")),
        Case(name: "unknown compression type", breakImage: { _, b in
            try patchBE64(b.path, at: 72, 1 << 3); try patch(b.path, at: 104, [7]); return b.path
        }, expected: field("compression_type", 7, reason: "unknown")),
        Case(name: "AES encryption", breakImage: { _, b in try patchBE32(b.path, at: 32, 1); return b.path }) { $0.isEncrypted(1) },
        Case(name: "LUKS encryption", breakImage: { _, b in try patchBE32(b.path, at: 32, 2); return b.path }) { $0.isEncrypted(2) },
        Case(name: "backing loop a->a", breakImage: { d, b in
            // Named "base.qcow2" in the header at first (same length), then itself.
            let a = d.file("self.qcow2")
            try QcowImage.create(path: a, options: .init(virtualSize: 0, backingFile: "base.qcow2", backingFormat: "qcow2")).close()
            try patchBackingName(a, to: "self.qcow2")
            return a
        }) {
            if case let .backingLoop(path, backing) = $0 { return path.hasSuffix("self.qcow2") && backing == "self.qcow2" }
            return false
        },
        Case(name: "backing loop a->b->a", breakImage: { d, b in
            // b.qcow2 backed by base; a.qcow2 backed by b; then b's name turned into a's.
            let bb = d.file("bbbb.qcow2"), a = d.file("aaaa.qcow2")
            try QcowImage.create(path: bb, options: .init(virtualSize: 0, backingFile: "base.qcow2", backingFormat: "qcow2")).close()
            try QcowImage.create(path: a, options: .init(virtualSize: 0, backingFile: "bbbb.qcow2", backingFormat: "qcow2")).close()
            try patchBackingName(bb, to: "aaaa.qcow2")
            return a
        }) {
            if case let .backingLoop(path, backing) = $0 { return path.hasSuffix("bbbb.qcow2") && backing == "aaaa.qcow2" }
            return false
        },
        Case(name: "backing file missing", breakImage: { d, b in
            let a = d.file("a.qcow2")
            try QcowImage.create(path: a, options: .init(virtualSize: 0, backingFile: "base.qcow2", backingFormat: "qcow2")).close()
            try patchBackingName(a, to: "gone.qcow2")
            return a
        }) {
            if case let .backingNotFound(_, backing) = $0 { return backing == "gone.qcow2" }
            return false
        },
        // Table entries: the image opens, reading the guest range fails.
        Case(name: "unaligned L2 table offset", breakImage: { _, b in
            try patchBE64(b.path, at: b.header.l1TableOffset, b.l1Entry + 512); return b.path
        }, expected: entry("L1", reason: "not cluster-aligned")),
        Case(name: "reserved bits in an L1 entry", breakImage: { _, b in
            try patchBE64(b.path, at: b.header.l1TableOffset, b.l1Entry | 0x100); return b.path
        }, expected: entry("L1", reason: "reserved bits")),
        Case(name: "L2 table beyond end of file", breakImage: { _, b in
            try patchBE64(b.path, at: b.header.l1TableOffset, (b.l1Entry & Qcow2.copiedFlag) | (1 << 40)); return b.path
        }, expected: entry("L1", reason: "beyond the end of file")),
        Case(name: "unaligned data cluster offset", breakImage: { _, b in
            try patchBE64(b.path, at: b.l2Offset, b.l2Entry + 4096); return b.path
        }, expected: entry("L2 of L1[0]", reason: "not cluster-aligned")),
        Case(name: "reserved bits in an L2 entry", breakImage: { _, b in
            try patchBE64(b.path, at: b.l2Offset, b.l2Entry | 2); return b.path
        }, expected: entry("L2 of L1[0]", reason: "reserved bits")),
        Case(name: "data cluster beyond end of file", breakImage: { _, b in
            try patchBE64(b.path, at: b.l2Offset, Qcow2.copiedFlag | (1 << 40)); return b.path
        }, expected: entry("L2 of L1[0]", reason: "beyond the end of file")),
        Case(name: "compressed entry with the COPIED bit", breakImage: { _, b in
            try patchBE64(b.path, at: b.l2Offset, Qcow2.copiedFlag | Qcow2.compressedFlag | (b.l2Entry & Qcow2.offsetMask)); return b.path
        }, expected: entry("L2 of L1[0]", reason: "COPIED")),
        Case(name: "compressed data that does not inflate", breakImage: { _, b in
            // Point L2[0] at the header as if it were deflate data: "QF" reads as a stored block
            // whose length check fails.
            try patchBE64(b.path, at: b.l2Offset, L2Entry.compressed(offset: 0, bytes: 2000, clusterBits: 16).raw)
            return b.path
        }) {
            if case let .decompressionFailed(_, guest, _) = $0 { return guest == 0 }
            return false
        },
    ]

    @Test(arguments: cases)
    func malformedImageGivesTypedError(_ c: Case) throws {
        let dir = try TempDir("malformed")
        let base = try Base(dir)
        let path = try c.breakImage(dir, base)
        var thrown: Error?
        do {
            // Open as qcow2 (the probe would take garbage for raw), read every byte, map, check.
            let img = try QcowImage(path: path)
            _ = try readAll(img)
            _ = try AllocationMap.compute(img)
        } catch {
            thrown = error
        }
        let e = try #require(thrown as? QcowError, "\(c.name): expected a QcowError, got \(String(describing: thrown))")
        #expect(c.expected(e), "\(c.name): got \(e)")
        #expect(e.description.contains(path) || e.description.contains((path as NSString).lastPathComponent),
                "\(c.name): the message names the file: \(e)")
    }

    /// Images QEMU itself makes with features this library refuses.
    @Test func qemuMadeImagesWithRefusedFeatures() throws {
        let dir = try TempDir("refused")
        let zstd = dir.file("zstd.qcow2"), ext = dir.file("ext.qcow2"), aes = dir.file("aes.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "compression_type=zstd", zstd, "1M")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "data_file=\(dir.file("data.raw"))", ext, "1M")
        try Qemu.imgOK("create", "-f", "qcow2", "--object", "secret,id=sec0,data=123456",
                       "-o", "encrypt.format=aes,encrypt.key-secret=sec0", aes, "1M")
        #expect(throws: QcowError.unsupportedFeature(path: zstd, feature: "zstd compression (compression_type=1); only deflate is read")) {
            try QcowImage(path: zstd)
        }
        #expect(throws: QcowError.unsupportedFeature(path: ext, feature: "external data file (incompatible bit 2)")) {
            try QcowImage(path: ext)
        }
        #expect(throws: QcowError.encrypted(path: aes, method: 1)) { try DiskImages.open(aes) }
    }

    @Test func backingChainDeeperThan64() throws {
        let dir = try TempDir("deep")
        try QcowImage.create(path: dir.file("c0.qcow2"), options: .init(virtualSize: 1 << 20, clusterSize: 4096)).close()
        for i in 1..<64 {
            try QcowImage.create(path: dir.file("c\(i).qcow2"),
                                 options: .init(virtualSize: 1 << 20, clusterSize: 4096, backingFile: "c\(i - 1).qcow2", backingFormat: "qcow2")).close()
        }
        // 64 images in all: the limit, still readable.
        let top = try DiskImages.open(dir.file("c63.qcow2"))
        #expect(top.chain.count == 64)
        #expect(try top.read(count: 16, at: 0) == [UInt8](repeating: 0, count: 16))
        // One more: refused, by create's final open and by every later open.
        #expect(throws: QcowError.self) {
            try QcowImage.create(path: dir.file("c64.qcow2"),
                                 options: .init(virtualSize: 1 << 20, clusterSize: 4096, backingFile: "c63.qcow2", backingFormat: "qcow2"))
        }
        #expect(throws: QcowError.backingChainTooDeep(path: dir.file("c1.qcow2"), depth: 64)) {
            try DiskImages.open(dir.file("c64.qcow2"))
        }
    }

    /// Random damage to the metadata of a QEMU-made image (compressed clusters, zero clusters, a
    /// snapshot): every outcome is success or a QcowError.
    @Test func randomMetadataDamageNeverCrashes() throws {
        let dir = try TempDir("fuzz")
        let pristine = dir.file("pristine.qcow2")
        try writeFile(dir.file("src.raw"), makeDiskContents(size: 1 << 20, seed: 5))
        try Qemu.imgOK("convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", dir.file("src.raw"), pristine)
        try Qemu.io(pristine, ["write -P 0x33 8k 12k", "write -z 64k 16k"])
        try Qemu.imgOK("snapshot", "-c", "s1", pristine)
        try Qemu.io(pristine, ["write -P 0x44 0 4k"])
        let bytes = try readFile(pristine)
        let metadataEnd = min(bytes.count, 64 * 1024)
        var rng = SeededRandom(seed: 2024)
        let victim = dir.file("victim.qcow2")
        for round in 0..<300 {
            var b = bytes
            for _ in 0..<(1 + rng.below(4)) {
                // Mostly the header and the tables near the start; sometimes anywhere.
                let at = Int(rng.below(UInt64(rng.below(4) == 0 ? b.count : (round % 3 == 0 ? 120 : metadataEnd))))
                switch rng.below(3) {
                case 0: b[at] ^= UInt8(1 << rng.below(8))
                case 1: b[at] = UInt8(truncatingIfNeeded: rng.next())
                default: for k in at..<min(b.count, at + 8) { b[k] = 0xFF }
                }
            }
            try writeFile(victim, b)
            do {
                let img = try QcowImage(path: victim)
                if img.virtualSize <= 16 << 20 {
                    _ = try? readAll(img)
                    _ = try? AllocationMap.compute(img)
                }
                _ = try img.check()
            } catch let e as QcowError {
                _ = e.description
            } catch {
                Issue.record("round \(round): not a QcowError: \(error)")
            }
        }
    }
}

extension QcowError {
    func isEncrypted(_ method: UInt32) -> Bool {
        if case let .encrypted(_, m) = self { return m == method }
        return false
    }
}

/// Internal snapshots are read and counted, never trusted: a damaged snapshot table gives a
/// typed error or a counted corruption, never a crash.
@Suite struct MalformedSnapshotTests {
    enum Damage: String, CaseIterable, Sendable {
        case l1OffsetHuge, l1OffsetUnaligned, l1OffsetPastEnd, l1SizeHuge, extraDataHuge
    }

    @Test(arguments: Damage.allCases)
    func damagedSnapshotTable(_ damage: Damage) throws {
        let dir = try TempDir("snapdamage")
        let img = dir.file("s.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", img, "1M")
        try Qemu.io(img, ["write -P 0x10 0 16k"])
        try Qemu.imgOK("snapshot", "-c", "first", img)
        let table = try QcowImage(path: img).header.snapshotsOffset
        switch damage {
        case .l1OffsetHuge: try patchBE64(img, at: table, 0xFFFF_FFFF_FFFF_FE00)
        case .l1OffsetUnaligned: try patchBE64(img, at: table, 4096 + 8)
        case .l1OffsetPastEnd: try patchBE64(img, at: table, 1 << 40)
        case .l1SizeHuge: try patchBE32(img, at: table + 8, 0xFFFF_FFFF)
        case .extraDataHuge: try patchBE32(img, at: table + 36, 0x7FFF_FFFF)
        }
        do {
            let q = try QcowImage(path: img)
            let r = try q.check()
            #expect(r.corruptions > 0, "\(damage): the damage is counted: \(r.messages)")
            // The active image is untouched: it still reads.
            #expect(try q.read(count: 4, at: 0) == [0x10, 0x10, 0x10, 0x10])
        } catch let e as QcowError {
            switch e {
            case .invalidEntry, .invalidField, .truncated: break
            default: Issue.record("\(damage): unexpected \(e)")
            }
        }
    }
}
