import Host
@testable import Layers
import OCI
import Testing

@Suite("wasted bytes")
struct WastedBytesTests {
    func file(_ p: String, _ size: Int64) -> LayerEntry { LayerEntry(path: p, kind: .regular, size: size) }

    @Test("bytes deleted or replaced by later layers count against the layer that added them")
    func perLayer() {
        let l0 = [LayerEntry(path: "a", kind: .directory), file("a/big", 1000), file("a/keep", 10), file("b", 100),
                  LayerEntry(path: "d", kind: .directory), file("d/x", 7), file("d/y", 8)]
        let l1 = [LayerEntry(path: "a", kind: .directory), LayerEntry(path: "a/big", kind: .whiteout), file("b", 200),
                  LayerEntry(path: "d", kind: .directory), LayerEntry(path: "d", kind: .opaque), file("d/z", 5)]
        let l2 = [LayerEntry(path: "b", kind: .whiteout), LayerEntry(path: "d", kind: .whiteout)]
        let wasted = WastedBytes.perLayer([l0, l1, l2]).map(\.wastedBytes)
        let expected: [Int64] = [1115, 205, 0]
        #expect(wasted == expected)
    }

    @Test("the analysis names the offenders, counts package caches left in the image, and gives an efficiency")
    func analysis() {
        let l0 = [file("usr/bin/tool", 500), file("var/lib/apt/lists/deb_bookworm_Packages", 300), file("tmp/build.o", 50)]
        let l1 = [LayerEntry(path: "tmp/build.o", kind: .whiteout), file("usr/bin/tool", 600),
                  file("var/cache/apt/archives/tool.deb", 200), file("var/cache/apt/archives/lock", 0)]
        let a = WastedBytes.analyze([l0, l1])
        #expect(a.totalFileBytes == 1650)
        #expect(a.layers.map(\.hiddenBytes) == [550, 0])
        #expect(a.layers.map(\.cacheBytes) == [300, 200])
        #expect(a.wastedBytes == 1050)
        #expect(abs(a.efficiency - (1 - 1050.0 / 1650.0)) < 1e-9)
        #expect(a.offenders.map(\.path) == ["usr/bin/tool", "var/lib/apt/lists/deb_bookworm_Packages", "var/cache/apt/archives/tool.deb", "tmp/build.o"])
        #expect(a.offenders.first?.reason == "replaced by layer 1" && a.offenders.last?.reason == "deleted by layer 1")
        #expect(WastedBytes.analyze([]).efficiency == 1)
    }
}
