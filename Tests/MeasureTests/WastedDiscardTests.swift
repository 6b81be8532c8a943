import Foundation
import QcowIO
import Testing
import TestSupport
@testable import Measure

// A trim through qemu-storage-daemon leaves zero clusters in the top link over data an earlier
// link wrote; measure wasted counts those clusters as freed by the link that holds the data.

@Test func dataUnderAZeroMarkingIsNamedByTheLinkThatHoldsIt() throws {
    let dir = try TempDir("wasted-discard")
    defer { dir.cleanup() }
    let cs = 65536, size: UInt64 = 1 << 20
    let base = try QcowImage.create(path: dir.file("base.qcow2"), options: .init(virtualSize: size))
    try base.write([UInt8](repeating: 1, count: 4 * cs), at: 0)
    try base.close()
    let mid = try QcowImage.create(path: dir.file("mid.qcow2"), options: .init(virtualSize: size, backingFile: "base.qcow2", backingFormat: "qcow2"))
    try mid.write([UInt8](repeating: 2, count: cs), at: UInt64(2 * cs))
    try mid.close()
    let top = try QcowImage.create(path: dir.file("top.qcow2"), options: .init(virtualSize: size, backingFile: "mid.qcow2", backingFormat: "qcow2"))
    try top.writeZeroes(at: UInt64(cs), length: UInt64(3 * cs))
    try top.close()

    let img = try QcowImage(path: dir.file("top.qcow2"))
    defer { try? img.close() }
    let map = try AllocationMap.compute(img)
    let zero = try #require(map.extents.first { $0.depth == 0 && !$0.data }, "\(map.extents)")
    #expect(zero.start == UInt64(cs) && zero.length == UInt64(3 * cs))
    var found: [(depth: Int, start: UInt64, length: UInt64)] = []
    try WastedMeasurement.dataBelow(try #require(img.backingImage), depth: 1, from: zero.start, length: zero.length) {
        found.append(($0, $1, $2))
    }
    // Cluster 1 is the base's (depth 2), cluster 2 the middle link's (depth 1), cluster 3 the base's.
    #expect(found.map(\.depth) == [2, 1, 2], "\(found)")
    #expect(found.map(\.start) == [1, 2, 3].map { UInt64($0 * cs) } && found.allSatisfy { $0.length == UInt64(cs) }, "\(found)")
    // The middle link's cluster is hidden by the zero marking: not visible, though allocated.
    #expect(map.chain[1].allocatedBytes == UInt64(cs) && map.chain[1].visibleBytes == 0)
}
