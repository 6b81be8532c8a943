/// L1 table entry (eight bytes, big-endian).
///
/// ```
/// bits 0..8    reserved, must be zero
/// bits 9..55   host offset of the L2 table (cluster-aligned); 0 = unallocated
/// bits 56..62  reserved, must be zero
/// bit  63      COPIED: the L2 table's refcount is exactly 1
/// ```
public struct L1Entry: Equatable, Sendable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public init(l2Offset: UInt64, copied: Bool) {
        raw = (l2Offset & Qcow2.offsetMask) | (copied ? Qcow2.copiedFlag : 0)
    }

    public static let reservedMask: UInt64 = ~(Qcow2.offsetMask | Qcow2.copiedFlag)

    public var l2Offset: UInt64 { raw & Qcow2.offsetMask }
    public var isCopied: Bool { raw & Qcow2.copiedFlag != 0 }
    public var isAllocated: Bool { l2Offset != 0 }
    public var reservedBits: UInt64 { raw & L1Entry.reservedMask }
}

/// L2 table entry (eight bytes, big-endian), in one of two forms chosen by bit 62.
///
/// ```
/// standard (bit 62 = 0):
///   bit  0       reads as zeros (version 3)
///   bits 1..8    reserved, must be zero
///   bits 9..55   host offset of the data cluster (cluster-aligned); 0 = unallocated
///   bits 56..61  reserved, must be zero
///   bit  63      COPIED: the data cluster's refcount is exactly 1
/// compressed (bit 62 = 1), with x = 62 - (cluster_bits - 8):
///   bits 0..x-1  host byte offset of the compressed data
///   bits x..61   additional 512-byte sectors after the one holding the offset
///   bit  63      must be zero
/// ```
public struct L2Entry: Equatable, Sendable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }

    public static let unallocated = L2Entry(raw: 0)
    public static func standard(offset: UInt64, copied: Bool, zero: Bool = false) -> L2Entry {
        L2Entry(raw: (offset & Qcow2.offsetMask) | (copied ? Qcow2.copiedFlag : 0) | (zero ? Qcow2.zeroFlag : 0))
    }

    /// A compressed entry for `bytes` of deflated data at host byte `offset`.
    public static func compressed(offset: UInt64, bytes: Int, clusterBits: Int) -> L2Entry {
        let shift = 62 - (clusterBits - 8)
        let sectors = (Int(offset % 512) + bytes + 511) / 512
        return L2Entry(raw: Qcow2.compressedFlag | UInt64(sectors - 1) << UInt64(shift) | offset)
    }

    public var isCompressed: Bool { raw & Qcow2.compressedFlag != 0 }
    public var isCopied: Bool { raw & Qcow2.copiedFlag != 0 }
    /// Standard form: reads as zeros regardless of the offset.
    public var isZero: Bool { !isCompressed && raw & Qcow2.zeroFlag != 0 }
    /// Standard form: host cluster offset (0 when none).
    public var clusterOffset: UInt64 { isCompressed ? 0 : raw & Qcow2.offsetMask }
    public var isUnallocated: Bool { !isCompressed && clusterOffset == 0 && !isZero }

    public static let standardReservedMask: UInt64 = 0x3F00_0000_0000_01FE

    /// Compressed form: host byte offset of the data.
    public func compressedOffset(clusterBits: Int) -> UInt64 {
        let shift = UInt64(62 - (clusterBits - 8))
        return raw & ((1 << shift) - 1)
    }

    /// Compressed form: the sector-aligned host byte range the entry covers (what refcounts count).
    public func compressedRange(clusterBits: Int) -> (start: UInt64, length: UInt64) {
        let shift = UInt64(62 - (clusterBits - 8))
        let sectors = ((raw >> shift) & ((1 << UInt64(clusterBits - 8)) - 1)) + 1
        let start = compressedOffset(clusterBits: clusterBits) & ~511
        return (start, sectors * 512)
    }
}

/// Refcount table entry: bits 9..63 the host offset of a refcount block (cluster-aligned), 0 when
/// the block is not allocated; bits 0..8 reserved.
public struct RefcountTableEntry: Equatable, Sendable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    public static let offsetMask: UInt64 = ~UInt64(0x1FF)
    public var blockOffset: UInt64 { raw & RefcountTableEntry.offsetMask }
    public var reservedBits: UInt64 { raw & 0x1FF }
}

/// A refcount block: `(clusterSize * 8) >> refcountOrder` counts of `1 << refcountOrder` bits,
/// big-endian; for widths below eight, entry 0 takes the least significant bits of byte 0, as the
/// spec and QEMU have it ("bit 0 means the least significant bit").
public struct RefcountBlock: Sendable {
    public var bytes: [UInt8]
    public let refcountOrder: Int

    public init(bytes: [UInt8], refcountOrder: Int) {
        self.bytes = bytes
        self.refcountOrder = refcountOrder
    }

    public init(clusterSize: Int, refcountOrder: Int) {
        self.init(bytes: [UInt8](repeating: 0, count: clusterSize), refcountOrder: refcountOrder)
    }

    public var count: Int { (bytes.count * 8) >> refcountOrder }
    public var maxValue: UInt64 { refcountOrder == 6 ? UInt64.max : (1 << (UInt64(1) << UInt64(refcountOrder))) - 1 }

    public subscript(i: Int) -> UInt64 {
        get {
            let bits = 1 << refcountOrder
            if bits >= 8 {
                let n = bits / 8
                var v: UInt64 = 0
                for k in 0..<n { v = v << 8 | UInt64(bytes[i * n + k]) }
                return v
            }
            let perByte = 8 / bits
            let byte = bytes[i / perByte]
            let shift = (i % perByte) * bits
            return UInt64(byte >> UInt8(shift)) & ((1 << UInt64(bits)) - 1)
        }
        set {
            let bits = 1 << refcountOrder
            if bits >= 8 {
                let n = bits / 8
                for k in 0..<n { bytes[i * n + k] = UInt8(truncatingIfNeeded: newValue >> UInt64(8 * (n - 1 - k))) }
                return
            }
            let perByte = 8 / bits
            let shift = (i % perByte) * bits
            let mask = UInt8(((1 << bits) - 1) << shift)
            bytes[i / perByte] = (bytes[i / perByte] & ~mask) | (UInt8(truncatingIfNeeded: newValue << UInt64(shift)) & mask)
        }
    }
}
