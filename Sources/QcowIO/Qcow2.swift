/// The qcow2 image format, versions 2 and 3 (QEMU docs/interop/qcow2.txt).
///
/// An image is a sequence of host clusters of `1 << clusterBits` bytes. Cluster 0 holds the
/// header, its extensions and the backing file name. Guest offsets map to host clusters through a
/// two-level table; host clusters are reference-counted.
///
/// ```
///  host file                           guest disk
///  +------------------------------+
///  | header (big-endian fields)   |     guest offset
///  | extensions: backing format,  |       = l1Index << (clusterBits + l2Bits)
///  |   feature names, ... end     |       | l2Index << clusterBits
///  | backing file name            |       | offsetInCluster
///  +------------------------------+    (l2Bits = clusterBits - 3: eight-byte entries)
///  | L1 table  -> L2 tables       |
///  | L2 table  -> data clusters   |     L1 entry: bits 9..55 L2 table offset, bit 63 COPIED
///  |              or compressed   |     L2 entry: bits 9..55 data offset, bit 0 reads as zero,
///  |              byte ranges     |              bit 62 compressed, bit 63 COPIED
///  | refcount table -> blocks     |     refcount block: one (1 << refcountOrder)-bit big-endian
///  | refcount blocks              |              count per host cluster
///  | snapshot table, snapshot L1s |
///  +------------------------------+
/// ```
///
/// An unallocated guest cluster reads from the backing file, or as zeros when there is none.
/// A cluster whose refcount is exactly 1 carries the COPIED flag in the L1/L2 entry that points at
/// it, and may be written in place; any other must be copied before it is written.
public enum Qcow2 {
    /// "QFI\xfb"
    public static let magic: UInt32 = 0x5146_49FB

    /// Bytes of the version 2 header, and the minimum header length of version 3.
    public static let v2HeaderLength = 72
    public static let v3HeaderLength = 104
    /// Version 3 header length when the compression type byte is present.
    public static let v3HeaderLengthWithCompressionType = 112

    public static let minClusterBits = 9
    public static let maxClusterBits = 21
    public static let defaultClusterBits = 16
    public static let defaultRefcountOrder = 4

    /// QEMU's own ceilings, which keep table sizes bounded for hostile headers.
    public static let maxL1Bytes = 32 * 1024 * 1024
    public static let maxRefcountTableBytes = 8 * 1024 * 1024
    public static let maxBackingFileNameLength = 1023
    public static let maxSnapshots = 65536
    public static let maxBackingChainDepth = 64

    /// Bits 9..55 of an L1 or standard L2 entry address a cluster; the rest is flags or reserved.
    public static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
    public static let copiedFlag: UInt64 = 1 << 63
    public static let compressedFlag: UInt64 = 1 << 62
    public static let zeroFlag: UInt64 = 1

    public static let sectorSize = 512

    /// Header extension types.
    public enum ExtensionType: UInt32, Sendable {
        case end = 0
        case backingFormat = 0xE279_2ACA
        case featureNameTable = 0x6803_F857
        case bitmaps = 0x2385_2875
        case fullDiskEncryption = 0x0537_BE77
        case externalDataFile = 0x4441_5441
    }

    /// Incompatible feature bits (header offset 72).
    public struct IncompatibleFeatures: OptionSet, Sendable, Hashable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let dirty = IncompatibleFeatures(rawValue: 1 << 0)
        public static let corrupt = IncompatibleFeatures(rawValue: 1 << 1)
        public static let externalDataFile = IncompatibleFeatures(rawValue: 1 << 2)
        public static let compressionType = IncompatibleFeatures(rawValue: 1 << 3)
        public static let extendedL2 = IncompatibleFeatures(rawValue: 1 << 4)
        public static let known: IncompatibleFeatures = [.dirty, .corrupt, .externalDataFile, .compressionType, .extendedL2]
    }

    /// Compatible feature bits (header offset 80).
    public struct CompatibleFeatures: OptionSet, Sendable, Hashable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let lazyRefcounts = CompatibleFeatures(rawValue: 1 << 0)
    }

    /// Compression types (header byte 104).
    public enum CompressionType: UInt8, Sendable {
        case deflate = 0
        case zstd = 1
    }
}
