import Foundation
import QcowIO
import Testing
import TestSupport

/// `imgbench qcow map --format json` on a chain three deep agrees with `qemu-img map --output=json`:
/// bytes allocated by each image, bytes each depth supplies to the flattened disk, the depth of
/// every range, and what the top image costs on disk.
@Suite struct MapCommandTests {
    enum Maker: String, CaseIterable, Sendable { case qemu, imgbench }

    @Test(arguments: Maker.allCases)
    func mapAgreesWithQemuImgMap(_ maker: Maker) throws {
        let dir = try TempDir("map")
        let base = dir.file("base.qcow2"), mid = dir.file("mid.qcow2"), top = dir.file("top.qcow2")
        switch maker {
        case .qemu:
            try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", base, "6M")
            try Qemu.io(base, ["write -P 0x01 0 1M", "write -c -P 0x02 2M 64k", "write -P 0x03 4M 512k"])
            try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.qcow2", "-F", "qcow2", mid)
            try Qemu.io(mid, ["write -P 0x11 256k 128k", "write -z 4M 64k", "write -P 0x12 5M 100k"])
            try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "mid.qcow2", "-F", "qcow2", top)
            try Qemu.io(top, ["write -P 0x21 300k 8k", "write -z 0 16k", "write -P 0x22 5M 4k", "write -c -P 0x23 3M 4k"])
        case .imgbench:
            // The same shape written by imgbench: base and diffs converted from raw disks.
            let raw0 = dir.file("0.raw"), raw1 = dir.file("1.raw"), raw2 = dir.file("2.raw")
            try writeRandomRawImage(raw0, size: 6 << 20, seed: 1)
            var disk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: raw0)))
            disk.replaceSubrange(1_000_000..<1_200_000, with: [UInt8](repeating: 0x31, count: 200_000))
            for i in (3 << 20)..<((3 << 20) + 65536) { disk[i] = 0 }
            try Data(disk).write(to: URL(fileURLWithPath: raw1))
            disk.replaceSubrange(4_000_000..<4_010_000, with: [UInt8](repeating: 0x32, count: 10_000))
            try Data(disk).write(to: URL(fileURLWithPath: raw2))
            for (args, label) in [
                (["qcow", "convert", raw0, base, "--cluster-size", "4K", "--progress", "none"], "base"),
                (["qcow", "convert", raw1, mid, "--cluster-size", "4K", "--backing", "base.qcow2", "--progress", "none"], "mid"),
                (["qcow", "convert", raw2, top, "--cluster-size", "4K", "--compress", "--backing", "mid.qcow2", "--progress", "none"], "top"),
            ] {
                let r = try runProcess(try IMGBenchBinary.path(), args)
                try #require(r.status == 0, "convert \(label): \(r.output)")
            }
            for (img, raw) in [(base, raw0), (mid, raw1), (top, raw2)] {
                let c = try Qemu.img("compare", img, raw)
                #expect(c.status == 0, "\(img): \(c.output)")
            }
        }

        let r = try imgbench("qcow", "map", top, "--format", "json")
        try #require(r.status == 0, "\(r.output)")
        let map = try decodeJSON(AllocationMap.self, r.stdout)
        try #require(map.chain.count == 3)
        #expect(map.chain.map { ($0.path as NSString).lastPathComponent } == ["top.qcow2", "mid.qcow2", "base.qcow2"])

        // Per image: what qemu-img map of that image reports at depth 0.
        for (depth, img) in [top, mid, base].enumerated() {
            let extents = try Qemu.map(img)
            var data: UInt64 = 0, zero: UInt64 = 0
            for e in extents where e["depth"] as? Int == 0 && e["present"] as? Bool == true {
                let length = (e["length"] as! NSNumber).uint64Value
                if e["data"] as? Bool == true { data += length } else if e["zero"] as? Bool == true { zero += length }
            }
            #expect(map.chain[depth].allocatedBytes == data, "depth \(depth): allocated \(map.chain[depth].allocatedBytes), qemu-img \(data)")
            #expect(map.chain[depth].zeroBytes == zero, "depth \(depth): zero \(map.chain[depth].zeroBytes), qemu-img \(zero)")
        }

        // The flattened disk: which depth supplies each range.
        let extents = try Qemu.map(top)
        var visible = [UInt64](repeating: 0, count: 3)
        var unallocated: UInt64 = 0
        for e in extents {
            let length = (e["length"] as! NSNumber).uint64Value
            if e["present"] as? Bool == true, let d = e["depth"] as? Int { visible[d] += length } else { unallocated += length }
        }
        #expect(map.chain.map(\.visibleBytes) == visible)
        #expect(map.unallocatedBytes == unallocated)
        #expect(visible.reduce(0, +) + unallocated == map.virtualSize)
        // Range by range, in 4 KiB steps.
        func depthAt(_ off: UInt64, _ list: [(start: UInt64, length: UInt64, depth: Int?)]) -> Int? {
            list.first { off >= $0.start && off < $0.start + $0.length }?.depth ?? nil
        }
        let qemuRanges = extents.map { e in
            ((e["start"] as! NSNumber).uint64Value, (e["length"] as! NSNumber).uint64Value,
             e["present"] as? Bool == true ? e["depth"] as? Int : nil)
        }
        let mineRanges = map.extents.map { ($0.start, $0.length, $0.depth) }
        var mismatches: [UInt64] = []
        for off in stride(from: UInt64(0), to: map.virtualSize, by: 4096) where depthAt(off, qemuRanges) != depthAt(off, mineRanges) {
            mismatches.append(off)
        }
        #expect(mismatches.isEmpty, "depth differs at \(mismatches.prefix(10))")

        // The cost of one more VM: the top image's bytes on disk, as qemu-img info reports them.
        let info = try Qemu.imgOK("info", "--output=json", top)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
        #expect(map.topImageDiskBytes == (json["actual-size"] as! NSNumber).uint64Value)
        #expect(map.chain[0].fileBytes == UInt64(try FileManager.default.attributesOfItem(atPath: top)[.size] as! Int))
    }
}
