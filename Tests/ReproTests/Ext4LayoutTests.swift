import Foundation
import Host
import QcowIO
@testable import Repro
import Testing

/// Ext4Layout against dumpe2fs (e2fsprogs), on filesystems mkfs.ext4 makes here: every group's
/// superblock copy and descriptors, bitmaps and inode table are where dumpe2fs says they are.
@Test(arguments: [1024, 4096])
func ext4LayoutAgreesWithDumpe2fs(blockSize: Int) throws {
    let dir = NSTemporaryDirectory() + "imgbench-ext4-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: "\(dir)/root/etc", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "hello\n".write(toFile: "\(dir)/root/etc/hello", atomically: true, encoding: .utf8)
    let raw = "\(dir)/disk.raw"
    try Command.check("truncate", ["truncate", "-s", "300M", raw])
    try Command.check("mkfs.ext4", ["mkfs.ext4", "-q", "-F", "-b", "\(blockSize)", "-d", "\(dir)/root", raw])
    let dump = try Command.check("dumpe2fs", ["dumpe2fs", raw])
    let layout = try #require(try Ext4Layout.read(try RawImage(path: raw)))
    #expect(layout.blockSize == blockSize)

    // "Group 3: (Blocks 24577-32768)", "  Backup superblock at 24577, Group descriptors at 24578-24579",
    // "  Block bitmap at 263 (bg #0 + 262)", "  Inode bitmap at 279 ...", "  Inode table at 1828-2339 ..."
    func numbers(_ s: Substring) -> [UInt64] {
        s.split(whereSeparator: { !$0.isNumber }).compactMap { UInt64($0) }
    }
    var group = -1
    var checked = 0
    for line in dump.split(separator: "\n") {
        let t = line.trimmingCharacters(in: .whitespaces)
        if t.hasPrefix("Group "), let g = numbers(Substring(t)).first { group = Int(g); continue }
        guard group >= 0 else { continue }
        if t.hasPrefix("Primary superblock at") || t.hasPrefix("Backup superblock at") {
            let n = numbers(Substring(t))
            for b in n[0]...n.last! { #expect(layout.region(of: b) == .superblock(group: group), "group \(group) block \(b): \(t)") }
            checked += 1
        } else if t.hasPrefix("Reserved GDT blocks at") {
            let n = numbers(Substring(t))
            #expect(layout.region(of: n[0]) == .superblock(group: group) && layout.region(of: n[1]) == .superblock(group: group), "\(t)")
        } else if t.hasPrefix("Block bitmap at") {
            #expect(layout.region(of: numbers(Substring(t))[0]) == .blockBitmap(group: group), "\(t)")
            checked += 1
        } else if t.hasPrefix("Inode bitmap at") {
            #expect(layout.region(of: numbers(Substring(t))[0]) == .inodeBitmap(group: group), "\(t)")
        } else if t.hasPrefix("Inode table at") {
            let n = numbers(Substring(t))
            let first = UInt64(group) * layout.inodesPerGroup + 1
            #expect(layout.region(of: n[0]) == .inodeTable(group: group, firstInode: first), "\(t)")
            #expect(layout.region(of: n[1]) == .inodeTable(group: group, firstInode: first + (n[1] - n[0]) * layout.inodesPerBlock), "\(t)")
            #expect(layout.region(of: n[1] + 1) != .inodeTable(group: group, firstInode: first + (n[1] + 1 - n[0]) * layout.inodesPerBlock))
        }
    }
    #expect(group + 1 == layout.groups.count && checked > layout.groups.count, "groups: dumpe2fs \(group + 1), layout \(layout.groups.count)")
    // A disk without ext4 has no layout.
    try Command.check("truncate", ["truncate", "-s", "1M", "\(dir)/empty.raw"])
    #expect(try Ext4Layout.read(try RawImage(path: "\(dir)/empty.raw")) == nil)
}
