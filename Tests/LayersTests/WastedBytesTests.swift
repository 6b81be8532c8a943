import Testing
@testable import Layers

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
        let wasted = WastedBytes.perLayer([l0, l1, l2])
        let expected: [Int64] = [1115, 205, 0]
        #expect(wasted == expected)
    }
}
