import Foundation
import Host
@testable import ImageBuild
import OCI
import QcowIO
import Testing
import TestSupport

// The cache entries' records keep when a layer was made and what making it cost (issue 18);
// records written before they kept it are still read, and still make valid entries.

private let layer = StoredLayer(
    descriptor: Descriptor(mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: Digest.of(Data("gz".utf8)), size: 2),
    diffID: Digest.of(Data("tar".utf8)), uncompressedSize: 3)

@Test func anOldLayerRecordReadsAsOneWithoutTimeOrCost() throws {
    let old = try JSONEncoder().encode(layer)
    let r = try JSONDecoder().decode(ContainerPass.LayerRecord.self, from: old)
    #expect(r.layer == layer && r.created == nil && r.builtSeconds == nil)
}

@Test func aNewLayerRecordKeepsTimeAndCostAndStillReadsAsAStoredLayer() throws {
    let r = ContainerPass.LayerRecord(layer: layer, created: "2026-11-30T02:25:29Z", builtSeconds: 12.345678901234)
    let data = try JSONEncoder().encode(r)
    #expect(try JSONDecoder().decode(ContainerPass.LayerRecord.self, from: data) == r)
    // What cache verify, du and prune read of it.
    #expect(try JSONDecoder().decode(StoredLayer.self, from: data) == layer)
    let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    #expect(Set(json.keys) == ["descriptor", "diffID", "uncompressedSize", "created", "builtSeconds"], "flat, as before: \(json.keys)")
}

@Test func anOldLinkRecordReadsWithoutCostAndItsLinkIsStillValid() throws {
    let dir = try TempDir("link-record")
    let link = dir.file("k.qcow2")
    try QcowImage.create(path: link, options: Qcow2CreateOptions(virtualSize: 1 << 20)).close()
    let (digest, size) = try Digest.ofFile(link)
    // As written before the cost was kept.
    let old = #"{"digest": "\#(digest)", "size": \#(size)}"#
    try old.write(toFile: dir.file("k.json"), atomically: true, encoding: .utf8)
    let r = try JSONDecoder().decode(VMPass.LinkRecord.self, from: Data(old.utf8))
    #expect(r.digest == digest && r.size == size && r.parent == nil && r.boot == nil && r.builtSeconds == nil)
    #expect(VMPass.checkLink(in: dir.path, key: "k", parent: nil) == .valid)

    var kept = r
    kept.builtSeconds = 4.5
    try JSONEncoder().encode(kept).write(to: URL(fileURLWithPath: dir.file("k.json")))
    #expect(try JSONDecoder().decode(VMPass.LinkRecord.self, from: Data(contentsOf: URL(fileURLWithPath: dir.file("k.json")))) == kept)
    #expect(VMPass.checkLink(in: dir.path, key: "k", parent: nil) == .valid)
}

@Test func theTotalCostWhenBuiltIsUnknownWhenOneStepDoesNotSayIt() {
    var a = BuildReport.Measure(seconds: 0.1, cacheHit: true)
    a.builtSeconds = 2
    var b = BuildReport.Measure(seconds: 3, cacheHit: false)
    b.builtSeconds = 3
    #expect(BuildReport.builtSeconds([a, b]) == 5)
    #expect(BuildReport.builtSeconds([a, b, BuildReport.Measure(seconds: 1, cacheHit: true)]) == nil)
    #expect(BuildReport.builtSeconds([]) == 0)
}

@Test func aRepairRemovesTheLinksMadeOnABadLinkAsWell() throws {
    let dir = try TempDir("repair-chain")
    let folder = dir.file("vm/s")
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    var parent: String?
    for key in ["c", "b", "a"] {
        let link = "\(folder)/\(key).qcow2"
        try QcowImage.create(path: link, options: Qcow2CreateOptions(virtualSize: 1 << 20)).close()
        try JSONEncoder().encode(VMPass.record(of: link, parent: parent)).write(to: URL(fileURLWithPath: "\(folder)/\(key).json"))
        parent = "\(key).qcow2"
    }
    // The first link of the chain (`c`, sorted last) no longer matches its record.
    var record = try JSONDecoder().decode(VMPass.LinkRecord.self, from: Data(contentsOf: URL(fileURLWithPath: "\(folder)/c.json")))
    record.digest = Digest.of(Data("another".utf8))
    try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: "\(folder)/c.json"))
    let inventory = CacheInventory(root: dir.path)
    #expect(inventory.verify(repair: false).findings.map(\.name) == ["vm/s/c"])
    let repaired = inventory.verify(repair: true).findings
    #expect(Set(repaired.map(\.name)) == ["vm/s/a", "vm/s/b", "vm/s/c"] && repaired.allSatisfy(\.removed), "\(repaired)")
    #expect(inventory.verify(repair: false).findings.isEmpty)
    #expect(inventory.entries().isEmpty)
}

// A blob a killed build was writing is removed by the next container pass, but only while no
// build writes blobs (one holding the blob lock may be writing it now).
@Test func aKilledCapturesBlobTemporaryIsRemovedOnlyWhenNoBuildWritesBlobs() throws {
    let dir = try TempDir("blob-temporaries")
    defer { dir.cleanup() }
    let cache = try BuildCache(root: dir.file("cache"), recipe: "test", events: nil)
    let blobs = BlobStore(root: "\(cache.root)/containers")
    try FileManager.default.createDirectory(atPath: blobs.directory, withIntermediateDirectories: true)
    let tmp = "\(blobs.directory)/.tmp-killed"
    FileManager.default.createFile(atPath: tmp, contents: Data("half a layer".utf8))
    let writing = try FileLock("\(cache.root)/containers/blobs.lock", mode: .shared)
    _ = try ContainerPass(driver: "vfs", cache: cache, noCache: false, sourceDateEpoch: nil, events: SilentEvents())
    #expect(FileManager.default.fileExists(atPath: tmp), "removed while another build held the blob lock")
    writing.unlock()
    _ = try ContainerPass(driver: "vfs", cache: cache, noCache: false, sourceDateEpoch: nil, events: SilentEvents())
    #expect(!FileManager.default.fileExists(atPath: tmp))
}

/// Events nobody reads.
private struct SilentEvents: BuildEvents {
    func note(_ message: String) {}
    func stepStarted(index: Int, of total: Int, target: String, text: String) {}
    func stepFinished(index: Int, target: String, measure: BuildReport.Measure) {}
    func output(_ text: String) {}
}

/// The package cache in `imgbench cache du|verify|prune`: kept files counted, a changed by-hash
/// index and a killed build's partial download found, files not served for --keep-days days
/// pruned, and nothing a build holds the lock of touched.
@Test func thePackageCacheIsSizedCheckedAndPrunedByLastServed() throws {
    let dir = try TempDir("package-inventory")
    let pool = dir.file("packages/deb.debian.org/debian/pool/main/h/hello")
    let hashes = dir.file("packages/deb.debian.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256")
    let other = dir.file("packages/deb.debian.org/debian/pool/main/o/old")
    for d in [pool, hashes, other] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
    func write(_ path: String, _ text: String, daysAgo: Double = 0) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let t = Date().addingTimeInterval(-daysAgo * 86_400)
        try FileManager.default.setAttributes([.modificationDate: t], ofItemAtPath: path)
    }
    let good = "Package: hello\n"
    try write("\(hashes)/\(Digest.of(Data(good.utf8)).hex)", good, daysAgo: 2)
    let changed = "\(hashes)/\(String(repeating: "ab", count: 32))"
    try write(changed, "not what the name says\n", daysAgo: 2)
    try write("\(pool)/hello_2.10-3_amd64.deb", "fresh", daysAgo: 1)
    try write("\(other)/old_1.0_amd64.deb", "old", daysAgo: 40)
    try write("\(pool)/held_1.0_amd64.deb", "old but a build fetches it", daysAgo: 40)
    try write("\(pool)/killed_1.0_amd64.deb.partial", "half")
    try write("\(pool)/busy_1.0_amd64.deb.partial", "being fetched")
    try write("\(pool)/dead_1.0_amd64.deb.lock", "")
    let busy = try #require(FileLock(trying: "\(pool)/busy_1.0_amd64.deb.lock", mode: .exclusive))
    let held = try #require(FileLock(trying: "\(pool)/held_1.0_amd64.deb.lock", mode: .exclusive))
    defer { busy.unlock(); held.unlock() }
    let inventory = CacheInventory(root: dir.path)

    let row = try #require(inventory.usage().kinds.first { $0.name == "packages" })
    #expect(row.entries == 5 && row.bytes > 0, "\(row)")

    let checked = inventory.verify(repair: false)
    let names = Set(checked.findings.map(\.name))
    #expect(checked.checked == 5)
    #expect(names == ["packages/deb.debian.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/\(String(repeating: "ab", count: 32))",
                      "packages/deb.debian.org/debian/pool/main/h/hello/killed_1.0_amd64.deb.partial"], "\(names)")
    #expect(checked.findings.allSatisfy { !$0.removed } && FileSystem.exists(changed))

    let pruned = inventory.prune(keepDays: 30)
    let prunedNames = Set(pruned.map(\.name))
    #expect(prunedNames.contains("packages/deb.debian.org/debian/pool/main/o/old/old_1.0_amd64.deb"), "\(prunedNames)")
    #expect(prunedNames.isSuperset(of: names), "prune removes what verify found: \(prunedNames)")
    #expect(!FileSystem.exists(other), "the folder it emptied goes")
    #expect(FileSystem.exists("\(pool)/hello_2.10-3_amd64.deb"), "served a day ago: kept")
    #expect(FileSystem.exists("\(pool)/held_1.0_amd64.deb"), "its lock is held: kept, however old")
    #expect(FileSystem.exists("\(pool)/busy_1.0_amd64.deb.partial"), "being fetched: kept")
    #expect(!FileSystem.exists("\(pool)/dead_1.0_amd64.deb.lock"), "a lock no one holds goes")
    #expect(inventory.verify(repair: false).findings.isEmpty)
}
