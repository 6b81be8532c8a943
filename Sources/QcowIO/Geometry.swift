/// The sizes that follow from a cluster size, a refcount width and a virtual size.
/// Pure arithmetic: planned and tested without I/O.
public struct Qcow2Geometry: Equatable, Sendable {
    public let clusterBits: Int
    public let refcountOrder: Int
    public let virtualSize: UInt64

    public init(clusterBits: Int, refcountOrder: Int, virtualSize: UInt64) {
        self.clusterBits = clusterBits
        self.refcountOrder = refcountOrder
        self.virtualSize = virtualSize
    }

    public var clusterSize: Int { 1 << clusterBits }
    /// log2 of the entries per L2 table.
    public var l2Bits: Int { clusterBits - 3 }
    public var l2Entries: Int { 1 << l2Bits }
    /// Guest bytes one L2 table maps.
    public var bytesPerL2: UInt64 { UInt64(1) << UInt64(clusterBits + l2Bits) }
    /// L1 entries needed to map the whole virtual size.
    public var l1Entries: UInt64 { Qcow2Geometry.ceilDiv(virtualSize, bytesPerL2) }
    /// Refcounts per refcount block.
    public var refcountsPerBlock: Int { (clusterSize * 8) >> refcountOrder }
    public var guestClusters: UInt64 { clusters(forBytes: virtualSize) }

    public func clusters(forBytes bytes: UInt64) -> UInt64 { Qcow2Geometry.ceilDiv(bytes, UInt64(clusterSize)) }

    /// `a / b` rounded up, without the `a + b - 1` that overflows for sizes near 2^64.
    static func ceilDiv(_ a: UInt64, _ b: UInt64) -> UInt64 { a / b + (a % b == 0 ? 0 : 1) }

    public func l1Index(_ guestOffset: UInt64) -> Int { Int(guestOffset >> UInt64(clusterBits + l2Bits)) }
    public func l2Index(_ guestOffset: UInt64) -> Int { Int((guestOffset >> UInt64(clusterBits)) & UInt64(l2Entries - 1)) }
    public func offsetInCluster(_ offset: UInt64) -> Int { Int(offset & UInt64(clusterSize - 1)) }

    /// Refcount metadata that covers `clusters` host clusters including itself:
    /// (refcount blocks, refcount table clusters). Found by iterating to a fixed point, as the
    /// metadata itself needs counting.
    public func refcountMetadata(forClusters clusters: UInt64) -> (blocks: UInt64, tableClusters: UInt64) {
        let perBlock = UInt64(refcountsPerBlock)
        let entriesPerTableCluster = UInt64(clusterSize / 8)
        var blocks: UInt64 = 0
        var table: UInt64 = 0
        while true {
            let total = clusters + blocks + table
            let nb = (total + perBlock - 1) / perBlock
            let nt = max(1, (nb + entriesPerTableCluster - 1) / entriesPerTableCluster)
            if nb == blocks && nt == table { return (blocks, table) }
            blocks = nb
            table = nt
        }
    }
}
