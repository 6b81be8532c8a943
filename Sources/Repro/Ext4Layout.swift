import Foundation
import QcowIO

/// Where an ext4 filesystem keeps what, read from its superblock and group descriptors: enough
/// to say what a block of the disk is (superblock, bitmap, inode table, or a file's data, which
/// debugfs then names).
///
/// ```
/// byte 1024: superblock (1024 bytes); group descriptors from the block after it
/// group g: [superblock backup + descriptors + reserved descriptors]  (groups 0, 1, 3^n, 5^n, 7^n)
///          block bitmap, inode bitmap, inode table (anywhere with flex_bg; their places are in
///          the group descriptor), data blocks
/// ```
struct Ext4Layout: Equatable {
    struct Group: Equatable {
        var blockBitmap: UInt64
        var inodeBitmap: UInt64
        var inodeTable: UInt64
    }

    var blockSize: Int
    var blocksCount: UInt64
    var firstDataBlock: UInt64
    var blocksPerGroup: UInt64
    var inodesPerGroup: UInt64
    var inodeSize: Int
    var descriptorBlocks: UInt64
    var reservedDescriptorBlocks: UInt64
    var sparseSuper: Bool
    var groups: [Group]

    var inodeTableBlocks: UInt64 { (inodesPerGroup * UInt64(inodeSize) + UInt64(blockSize) - 1) / UInt64(blockSize) }
    var inodesPerBlock: UInt64 { UInt64(blockSize / inodeSize) }

    /// What a block is.
    enum Region: Equatable {
        case superblock(group: Int)
        case blockBitmap(group: Int)
        case inodeBitmap(group: Int)
        /// A block of group `group`'s inode table holding inodes `firstInode ..< firstInode + count`.
        case inodeTable(group: Int, firstInode: UInt64)
        /// Anything else: file data, directories, extent blocks, the journal, or free space.
        case data
    }

    /// The layout of the ext4 filesystem on `disk` from byte `offset` (a partition's start;
    /// block numbers are the filesystem's), or nil when the disk does not hold one there.
    static func read(_ disk: DiskImage, at offset: UInt64 = 0) throws -> Ext4Layout? {
        guard disk.virtualSize >= offset + 2048 else { return nil }
        let sb = try disk.read(count: 1024, at: offset + 1024)
        guard le16(sb, 0x38) == 0xEF53 else { return nil }
        let log = le32(sb, 0x18)
        guard log <= 6 else { return nil }
        let blockSize = 1024 << Int(log)
        let incompat = le32(sb, 0x60), roCompat = le32(sb, 0x64)
        let is64 = incompat & 0x80 != 0
        let descSize = is64 ? max(32, Int(le16(sb, 0xFE))) : 32
        let blocksCount = UInt64(le32(sb, 0x04)) | (is64 ? UInt64(le32(sb, 0x150)) << 32 : 0)
        let firstData = UInt64(le32(sb, 0x14))
        let perGroup = UInt64(le32(sb, 0x20))
        let inodesPerGroup = UInt64(le32(sb, 0x28))
        let inodeSize = Int(le16(sb, 0x58))
        guard perGroup > 0, inodeSize >= 128, blockSize % inodeSize == 0, blocksCount > firstData else { return nil }
        let groupCount = Int((blocksCount - firstData + perGroup - 1) / perGroup)
        guard groupCount > 0, groupCount <= 1 << 20 else { return nil }
        let descBytes = groupCount * descSize
        let gdtStart = (firstData + 1) * UInt64(blockSize)
        guard offset + gdtStart + UInt64(descBytes) <= disk.virtualSize else { return nil }
        let gdt = try disk.read(count: descBytes, at: offset + gdtStart)
        var groups: [Group] = []
        for g in 0..<groupCount {
            let o = g * descSize
            func field(_ lo: Int, _ hi: Int) -> UInt64 {
                UInt64(le32(gdt, o + lo)) | (descSize >= 64 ? UInt64(le32(gdt, o + hi)) << 32 : 0)
            }
            groups.append(Group(blockBitmap: field(0, 0x20), inodeBitmap: field(4, 0x24), inodeTable: field(8, 0x28)))
        }
        return Ext4Layout(blockSize: blockSize, blocksCount: blocksCount, firstDataBlock: firstData, blocksPerGroup: perGroup,
                          inodesPerGroup: inodesPerGroup, inodeSize: inodeSize,
                          descriptorBlocks: UInt64((descBytes + blockSize - 1) / blockSize),
                          reservedDescriptorBlocks: UInt64(le16(sb, 0xCE)), sparseSuper: roCompat & 1 != 0, groups: groups)
    }

    /// Whether group `g` holds a copy of the superblock and descriptors.
    func hasSuperblock(_ g: Int) -> Bool {
        guard sparseSuper, g > 1 else { return true }
        for base in [3, 5, 7] {
            var p = base
            while p < g { p *= base }
            if p == g { return true }
        }
        return false
    }

    func region(of block: UInt64) -> Region {
        if block < firstDataBlock { return .superblock(group: 0) }
        let g = Int((block - firstDataBlock) / blocksPerGroup)
        let start = firstDataBlock + UInt64(g) * blocksPerGroup
        if hasSuperblock(g), block < start + 1 + descriptorBlocks + reservedDescriptorBlocks { return .superblock(group: g) }
        for (i, grp) in groups.enumerated() {
            if block == grp.blockBitmap { return .blockBitmap(group: i) }
            if block == grp.inodeBitmap { return .inodeBitmap(group: i) }
            if block >= grp.inodeTable, block < grp.inodeTable + inodeTableBlocks {
                return .inodeTable(group: i, firstInode: UInt64(i) * inodesPerGroup + (block - grp.inodeTable) * inodesPerBlock + 1)
            }
        }
        return .data
    }

    static func le16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    static func le32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(le16(b, o)) | UInt32(le16(b, o + 2)) << 16 }
}
