import Foundation
import Host
import QcowIO

/// The partition table of a `vm-boot=firmware` disk: GPT, as Debian's cloud images have it, so
/// that one disk boots under legacy BIOS (SeaBIOS: GRUB's boot.img in the protective MBR, its
/// core.img in the BIOS boot partition) and under UEFI (OVMF: `\EFI\BOOT\BOOTX64.EFI` on the ESP).
///
///     0        1 MiB          2 MiB            128 MiB                           end - 1 MiB   end
///     | GPT    | p1 BIOS boot | p2 ESP (FAT32) | p3 root (ext4)                  | backup GPT |
///
/// p2 and p3 start on multiples of 2 MiB, the largest `vm-cluster-size`, so no qcow2 cluster a
/// step writes into the root partition holds bytes of another partition. The disk and partition
/// GUIDs come from the base's seed: the same base key, the same partition table.
public enum DiskLayout {
    public static let sector: UInt64 = 512
    static let mib: UInt64 = 1 << 20
    static let biosBootType = "21686148-6449-6E6F-744E-656564454649"
    static let espType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    /// The discoverable partitions specification's x86-64 root.
    static let rootType = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"

    /// A byte range of the disk.
    public struct Partition: Equatable, Sendable {
        public var offset: UInt64
        public var size: UInt64
        public var type: String
        public var uuid: String
        public var name: String

        public var end: UInt64 { offset + size }
    }

    public struct Plan: Equatable, Sendable {
        public var diskSize: UInt64
        public var diskUUID: String
        public var biosBoot: Partition
        public var esp: Partition
        public var root: Partition
        /// The ESP's FAT volume id (8 hex digits).
        public var espVolumeID: String

        public var partitions: [Partition] { [biosBoot, esp, root] }

        /// The input of `sfdisk` that writes this table.
        public var sfdiskScript: String {
            var s = "label: gpt\nlabel-id: \(diskUUID)\nfirst-lba: 2048\nunit: sectors\n\n"
            for p in partitions {
                s += "start=\(p.offset / sector), size=\(p.size / sector), type=\(p.type), uuid=\(p.uuid), name=\"\(p.name)\"\n"
            }
            return s
        }
    }

    /// The layout of a disk of `size` bytes (at least `VMSettings.firmwareMinimumSize`).
    public static func plan(size: UInt64, seed: String) -> Plan {
        let align = 2 * mib
        let rootStart = 128 * mib
        let rootEnd = (size - mib) / align * align
        func uuid(_ what: String) -> String { BaseDisk.filesystemUUID(seed: "\(seed)/gpt/\(what)").uppercased() }
        let volume = BaseDisk.filesystemUUID(seed: "\(seed)/gpt/esp-volume").prefix(8)
        return Plan(diskSize: size, diskUUID: uuid("disk"),
                    biosBoot: Partition(offset: mib, size: mib, type: biosBootType, uuid: uuid("bios"), name: "bios-boot"),
                    esp: Partition(offset: align, size: rootStart - align, type: espType, uuid: uuid("esp"), name: "esp"),
                    root: Partition(offset: rootStart, size: rootEnd - rootStart, type: rootType, uuid: uuid("root"), name: "root"),
                    espVolumeID: String(volume))
    }

    /// The root partition of a disk that has a GPT (the last partition of the x86-64 root type, or
    /// the last partition), or nil for a filesystem-only disk (no "EFI PART" at LBA 1).
    public static func read(_ disk: DiskImage) throws -> Partition? {
        guard disk.virtualSize >= 34 * sector else { return nil }
        let header = try disk.read(count: Int(sector), at: sector)
        guard Array(header[0..<8]) == Array("EFI PART".utf8) else { return nil }
        func le(_ bytes: ArraySlice<UInt8>) -> UInt64 { bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        let entriesLBA = le(header[72..<80]), count = le(header[80..<84]), entrySize = le(header[84..<88])
        guard entrySize >= 128, count > 0, count <= 1024 else { return nil }
        let table = try disk.read(count: Int(count * entrySize), at: entriesLBA * sector)
        var found: [Partition] = []
        for i in 0..<Int(count) {
            let e = table[(i * Int(entrySize))..<(i * Int(entrySize) + 128)]
            let type = guid(Array(e.prefix(16)))
            guard type != "00000000-0000-0000-0000-000000000000" else { continue }
            let first = le(e[e.startIndex + 32..<e.startIndex + 40]), last = le(e[e.startIndex + 40..<e.startIndex + 48])
            let nameUnits = stride(from: 56, to: 128, by: 2).map { UInt16(e[e.startIndex + $0]) | UInt16(e[e.startIndex + $0 + 1]) << 8 }
            let name = String(decoding: nameUnits.prefix { $0 != 0 }, as: UTF16.self)
            found.append(Partition(offset: first * sector, size: (last - first + 1) * sector, type: type,
                                   uuid: guid(Array(e[e.startIndex + 16..<e.startIndex + 32])), name: name))
        }
        return found.last { $0.type == rootType } ?? found.last
    }

    /// A GPT GUID's text: the first three fields are stored little-endian.
    static func guid(_ b: [UInt8]) -> String {
        let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15]
        let hex = order.map { String(format: "%02X", b[$0]) }
        return [hex[0..<4], hex[4..<6], hex[6..<8], hex[8..<10], hex[10..<16]].map { $0.joined() }.joined(separator: "-")
    }
}
