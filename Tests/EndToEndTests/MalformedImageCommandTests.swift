import Foundation
import QcowIO
import Testing
import TestSupport

/// A broken image on the command line: exit 1 and one line on stderr that names the file and
/// what is wrong with it. Never a crash, never a stack trace.
@Suite struct MalformedImageCommandTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        /// The subcommand that meets the damage: header damage shows on open, table entries when
        /// the guest is walked, the backing chain when it is followed.
        var command: String
        /// Breaks a fresh 2 MiB image with 64 KiB clusters and data at guest 0 (or makes another
        /// file) and returns the path to give the command.
        var make: @Sendable (TempDir, String) throws -> String
        /// Text the message must contain.
        var mentions: String
        /// The file the message names when it is not the one given: the image of the chain where
        /// the fault is.
        var names: String? = nil
        var testDescription: String { name }
    }

    /// Offsets of the L1 table and of L1[0]'s L2 table.
    static func tables(_ path: String) throws -> (l1: UInt64, l2: UInt64, l2Entry0: UInt64) {
        let img = try QcowImage(path: path)
        defer { try? img.close() }
        let l2 = try readBE64(path, at: img.header.l1TableOffset) & Qcow2.offsetMask
        return (img.header.l1TableOffset, l2, try readBE64(path, at: l2))
    }

    static func header32(_ offset: UInt64, _ v: UInt64) -> @Sendable (TempDir, String) throws -> String {
        { _, p in try patch(p, at: offset, bigEndian(v, bytes: 4)); return p }
    }

    static func header64(_ offset: UInt64, _ v: UInt64) -> @Sendable (TempDir, String) throws -> String {
        { _, p in try patch(p, at: offset, bigEndian(v, bytes: 8)); return p }
    }

    static let cases: [Case] = [
        Case(name: "truncated header", command: "check", make: { _, p in
            try FileManager.default.removeItem(atPath: p)
            _ = FileManager.default.createFile(atPath: p, contents: Data([0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 3] + [UInt8](repeating: 0, count: 40)))
            return p
        }, mentions: "truncated"),
        Case(name: "garbage", command: "check", make: { d, _ in
            var rng = SeededRandom(seed: 4)
            let g = d.file("garbage.bin")
            try Data(rng.bytes(10_000)).write(to: URL(fileURLWithPath: g))
            return g
        }, mentions: "not a qcow2 image"),
        Case(name: "bad magic", command: "check", make: { _, p in try patch(p, at: 0, [0x51, 0x46, 0x49, 0xFB]); try patch(p, at: 3, [0xFA]); return p },
             mentions: "not a qcow2 image"),
        Case(name: "version 4", command: "info", make: header32(4, 4), mentions: "version=4"),
        Case(name: "cluster_bits 30", command: "map", make: header32(20, 30), mentions: "cluster_bits=30"),
        Case(name: "L1 beyond end of file", command: "check", make: header64(40, 1 << 30), mentions: "l1_table_offset=\(1 << 30)"),
        Case(name: "oversized L1", command: "check", make: header32(36, 0x1000_0000), mentions: "l1_size"),
        Case(name: "oversized refcount table", command: "check", make: header32(56, 0x10_0000), mentions: "refcount_table_clusters"),
        Case(name: "unaligned L1 offset", command: "info", make: { _, p in
            let t = try tables(p)
            try patch(p, at: 40, bigEndian(t.l1 + 8, bytes: 8)); return p
        }, mentions: "l1_table_offset"),
        Case(name: "unaligned L2 offset", command: "map", make: { _, p in
            let t = try tables(p)
            try patch(p, at: t.l1, bigEndian(Qcow2.copiedFlag | (t.l2 + 512), bytes: 8)); return p
        }, mentions: "L1[0]"),
        Case(name: "unaligned data offset", command: "convert", make: { _, p in
            let t = try tables(p)
            try patch(p, at: t.l2, bigEndian(t.l2Entry0 + 1024, bytes: 8)); return p
        }, mentions: "not cluster-aligned"),
        Case(name: "reserved bits in L2", command: "map", make: { _, p in
            let t = try tables(p)
            try patch(p, at: t.l2, bigEndian(t.l2Entry0 | (1 << 57), bytes: 8)); return p
        }, mentions: "reserved bits"),
        Case(name: "unknown incompatible feature", command: "info", make: header64(72, 1 << 40), mentions: "unknown incompatible feature bits 0x10000000000"),
        Case(name: "encryption", command: "check", make: header32(32, 1), mentions: "encrypted"),
        Case(name: "zstd", command: "info", make: { d, _ in
            let z = d.file("zstd.qcow2")
            try Qemu.imgOK("create", "-f", "qcow2", "-o", "compression_type=zstd", z, "1M")
            return z
        }, mentions: "zstd"),
        Case(name: "external data file", command: "map", make: { d, _ in
            let e = d.file("ext.qcow2")
            try Qemu.imgOK("create", "-f", "qcow2", "-o", "data_file=\(d.file("data.raw"))", e, "1M")
            return e
        }, mentions: "external data file"),
        Case(name: "backing loop a->b->a", command: "info", make: { d, _ in
            let a = d.file("a.qcow2"), b = d.file("b.qcow2")
            try Qemu.imgOK("create", "-f", "qcow2", "-u", "-b", "b.qcow2", "-F", "qcow2", a, "1M")
            try Qemu.imgOK("create", "-f", "qcow2", "-u", "-b", "a.qcow2", "-F", "qcow2", b, "1M")
            return a
        }, mentions: "backing chain loops back", names: "b.qcow2"), // b is where the chain comes back to a
        Case(name: "backing loop a->a", command: "check", make: { d, _ in
            let a = d.file("a.qcow2")
            try Qemu.imgOK("create", "-f", "qcow2", "-u", "-b", "./a.qcow2", "-F", "qcow2", a, "1M")
            return a
        }, mentions: "backing chain loops back"),
        Case(name: "chain deeper than 64", command: "info", make: { d, _ in
            try Qemu.imgOK("create", "-f", "qcow2", d.file("l0.qcow2"), "1M")
            for i in 1...64 {
                try Qemu.imgOK("create", "-f", "qcow2", "-u", "-b", "l\(i - 1).qcow2", "-F", "qcow2", d.file("l\(i).qcow2"), "1M")
            }
            return d.file("l64.qcow2")
        }, mentions: "deeper than 64", names: "l1.qcow2"), // l64 is depth 0, l1 depth 63: its backing would be the 65th
        Case(name: "compare of a broken image", command: "compare", make: header32(20, 30), mentions: "cluster_bits=30"),
    ]

    @Test(arguments: cases)
    func brokenImageGivesOneLineAndExit1(_ c: Case) throws {
        let dir = try TempDir("broken")
        let good = dir.file("img.qcow2")
        let made = try imgbench("qcow", "create", good, "2M")
        try #require(made.status == 0, "\(made.output)")
        let img = try QcowImage(path: good, writable: true)
        try img.write([UInt8](repeating: 0x11, count: 70_000), at: 0)
        try img.close()
        let path = try c.make(dir, good)
        var args = ["qcow", c.command, path]
        if c.command == "convert" { args += [dir.file("out.qcow2"), "--progress", "none"] }
        if c.command == "compare" { args.append(good == path ? dir.file("other.raw") : good) }
        if c.command == "compare" { _ = FileManager.default.createFile(atPath: dir.file("other.raw"), contents: Data(count: 2 << 20)) }
        let r = try runProcess(try IMGBenchBinary.path(), args)
        // qemu-img compare's convention: 2 for an error; everything else exits 1.
        #expect(r.status == (c.command == "compare" ? 2 : 1), "\(c.name): exit \(r.status): \(r.output)")
        #expect(r.errorLines.count == 1, "\(c.name): one line on stderr, got: \(r.stderr)")
        let line = String(r.errorLines.first ?? "")
        #expect(line.hasPrefix("imgbench: error: "), "\(c.name): \(line)")
        let named = c.names ?? (path as NSString).lastPathComponent
        #expect(line.contains("/" + named), "\(c.name): the message names the file \(named): \(line)")
        #expect(line.contains(c.mentions), "\(c.name): the message says '\(c.mentions)': \(line)")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.qcow2")), "no output is left behind")
        #expect(!FileManager.default.fileExists(atPath: dir.file("out.qcow2.partial")), "no partial output is left behind")
    }
}
