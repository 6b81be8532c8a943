import Foundation
import Host
@testable import ImageBuild
import Layers
import OCI
import Testing
import TestSupport

/// The bundle stager keeps the listing of each layer it applies from a capture's tar stream, so
/// that the report's wasted bytes never read that layer's blob again: the listing it keeps is the
/// blob's own, whichever of the apply and the capture ends first.
@Test func aCapturedLayersListingIsKeptAsTheBundleAppliesItAndIsTheBlobsOwn() throws {
    let dir = try TempDir("stager-listing")
    let tree = dir.file("tree")
    for d in ["etc/app", "usr/bin", "var/empty"] { try FileManager.default.createDirectory(atPath: "\(tree)/\(d)", withIntermediateDirectories: true) }
    try Data("key = value\n".utf8).write(to: URL(fileURLWithPath: "\(tree)/etc/app/app.conf"))
    try Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: "\(tree)/usr/bin/tool"))
    try FileManager.default.createSymbolicLink(atPath: "\(tree)/usr/bin/alias", withDestinationPath: "tool")
    let store = BlobStore(root: dir.file("blobs"))
    let listings = dir.file("listings")
    let stager = BundleStager(bundle: dir.file("bundle"))
    stager.listings = listings
    let layer = try stager.capturing("the test layer", digest: \.descriptor.digest) { tee in
        try LayerCapture.capture(.tree(tree), into: store, tee: tee).layer
    }
    try stager.finish()
    let digest = layer.descriptor.digest
    #expect(FileManager.default.fileExists(atPath: "\(listings)/\(digest.hex).json"))
    // Read from the kept listing only: the blob's path given is one that does not exist.
    let kept = try LayerListingCache.entries(of: dir.file("no-such-blob"), digest: digest, cache: listings)
    // The same as the blob's listing kept the way the report keeps one read from the blob (it
    // keeps what wasted bytes need: path, size, and whether a file, a whiteout or an opaque marker).
    let listed = try LayerReader.list(store.path(of: digest)).entries
    LayerListingCache.store(listed, digest: digest, cache: dir.file("from-blob"))
    let fromBlob = try LayerListingCache.entries(of: dir.file("no-such-blob"), digest: digest, cache: dir.file("from-blob"))
    #expect(kept == fromBlob && kept.map(\.path) == listed.map(\.path) && listed.count >= 7, "kept \(kept.count) entries, the blob lists \(listed.count)")
    #expect(FileManager.default.contents(atPath: dir.file("bundle/rootfs/etc/app/app.conf")) == Data("key = value\n".utf8))

    // Without a listings folder, nothing is kept.
    let plain = BundleStager(bundle: dir.file("bundle-2"))
    let other = try plain.capturing("the test layer again", digest: \.descriptor.digest) { tee in
        try LayerCapture.capture(.tree(tree), into: BlobStore(root: dir.file("blobs-2")), tee: tee).layer
    }
    try plain.finish()
    #expect(other.descriptor.digest == digest)
    #expect((try? FileManager.default.contentsOfDirectory(atPath: listings))?.count == 1)
}
