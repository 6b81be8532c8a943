import Foundation
@testable import QcowIO
import Testing
import TestSupport

// Helpers of the QcowIO tests: random raw images, reading images whole, and byte edits of image
// files. Temporary folders, the qemu tools and the seeded generator are in TestSupport.

/// The contents of a disk that exercise a converter: runs of zeros, incompressible random data,
/// compressible text-like data, and single non-zero bytes in otherwise empty stretches.
func makeDiskContents(size: Int, seed: UInt64) -> [UInt8] {
    SeededRandom.diskContents(size: size, seed: seed, shortestRun: 1, runSpread: 96 * 1024,
                              lineNumbers: 1000, line: { "imgbench qcow2 line \($0)\n" }, singleBytes: true)
}

/// Every guest byte of an image, read through QcowIO.
func readAll(_ image: DiskImage, chunk: Int = 1 << 20) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: Int(image.virtualSize))
    var at = 0
    while at < out.count {
        let n = min(chunk, out.count - at)
        try out.withUnsafeMutableBytes { try image.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[at..<(at + n)]), at: UInt64(at)) }
        at += n
    }
    return out
}

/// The first offset where two byte arrays differ (nil when equal).
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    if a == b { return nil }
    let n = min(a.count, b.count)
    for i in 0..<n where a[i] != b[i] { return i }
    return n
}

// MARK: - Byte edits of image files

func patchBE64(_ path: String, at offset: UInt64, _ v: UInt64) throws {
    var b = [UInt8](repeating: 0, count: 8)
    b.putBE64(v, at: 0)
    try patch(path, at: offset, b)
}

func patchBE32(_ path: String, at offset: UInt64, _ v: UInt32) throws {
    var b = [UInt8](repeating: 0, count: 4)
    b.putBE32(v, at: 0)
    try patch(path, at: offset, b)
}

func truncateFile(_ path: String, to size: UInt64) throws {
    let f = try BlockFile(path: path, mode: .readWrite)
    try f.truncate(to: size)
    try f.close()
}

/// The host offset of the refcount of `cluster`, and its width in bytes (refcount order 3 to 6).
func refcountLocation(_ path: String, cluster: UInt64) throws -> (offset: UInt64, width: Int) {
    let img = try QcowImage(path: path)
    let perBlock = UInt64(img.geometry.refcountsPerBlock)
    let width = (1 << img.geometry.refcountOrder) / 8
    precondition(width >= 1, "byte-wide refcounts only")
    let block = try readBE64(path, at: img.header.refcountTableOffset + (cluster / perBlock) * 8) & ~UInt64(0x1FF)
    return (block + (cluster % perBlock) * UInt64(width), width)
}

/// Overwrites the stored refcount of a host cluster (byte-wide refcounts).
func setRefcount(_ path: String, cluster: UInt64, to value: UInt64) throws {
    let (offset, width) = try refcountLocation(path, cluster: cluster)
    var b = [UInt8](repeating: 0, count: width)
    for i in 0..<width { b[i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * (width - 1 - i))) }
    try patch(path, at: offset, b)
}

/// Replaces the backing file name in the header cluster with one of the same length.
func patchBackingName(_ path: String, to name: String) throws {
    let f = try BlockFile(path: path, mode: .readOnly)
    let h = try Qcow2Header.parse(try f.readExactly(112, at: 0, what: "header"), path: path)
    precondition(Int(h.backingFileSize) == name.utf8.count, "same-length names only")
    try patch(path, at: h.backingFileOffset, Array(name.utf8))
}
