import Crypto
import Foundation
@testable import OCI
import Testing

// Digests and the blob store: what is written is named by its hash, and what does not hash to its
// name, or has another size than its descriptor says, is refused.

@Test func digestsParseOnlySHA256WithLowercaseHex() throws {
    let d = Digest.of(Data("hello".utf8))
    #expect(d.description == "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    #expect(try Digest(parsing: d.description) == d)
    for bad in ["sha512:" + d.hex, "sha256:" + d.hex.uppercased(), "sha256:abc", d.hex] {
        #expect(throws: OCIError.invalidDigest(bad)) { try Digest(parsing: bad) }
    }
}

@Test func aBlobIsStoredByItsDigestAndVerified() throws {
    let dir = NSTemporaryDirectory() + "/imgbench-oci-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let store = BlobStore(root: dir)
    let data = Data("layer bytes".utf8)
    let desc = try store.put(data, mediaType: MediaType.imageConfig)
    #expect(desc.digest == Digest.of(data) && desc.size == Int64(data.count))
    try store.verify(desc)
    #expect(throws: OCIError.self) {
        try store.verify(Descriptor(mediaType: MediaType.imageConfig, digest: desc.digest, size: 5))
    }
    try Data("tampered!!!".utf8).write(to: URL(fileURLWithPath: store.path(of: desc.digest)))
    #expect(throws: OCIError.self) { try store.verify(desc) }
}

/// A layout whose image "bad" lists a layer of `size` bytes (its manifest is written as given).
func layoutWithLayerSize(_ size: Int64, at dir: String) throws -> (layout: ImageLayout, manifest: Descriptor) {
    let layout = try ImageLayout.create(at: dir)
    let config = try layout.putJSON(ImageConfig(), mediaType: MediaType.imageConfig)
    let layer = try layout.blobs.put(Data("not a tar".utf8), mediaType: MediaType.layerGzip)
    let listed = Descriptor(mediaType: MediaType.layerGzip, digest: layer.digest, size: size)
    let m = try layout.putJSON(Manifest(config: config, layers: [listed]), mediaType: MediaType.imageManifest)
    try layout.tag(m, as: "bad")
    return (layout, m)
}

@Test func aNegativeSizeIsRefusedWhereTheManifestIsReadWithItsJSONPath() throws {
    // It crashed later, where the layers' sizes were summed into an unsigned count.
    let dir = NSTemporaryDirectory() + "/imgbench-oci-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let (layout, m) = try layoutWithLayerSize(-1, at: dir)
    let blob = layout.blobs.path(of: m.digest)
    #expect { try layout.image(tag: "bad") } throws: { e in
        let s = "\(e)"
        return s.hasPrefix("\(blob): ") && s.contains("at layers[0].size: ") && s.contains("size -1 is negative")
    }
    #expect([Descriptor(mediaType: "x", digest: m.digest, size: .max), Descriptor(mediaType: "x", digest: m.digest, size: .max),
             Descriptor(mediaType: "x", digest: m.digest, size: .max)].totalSize == .max)
}
