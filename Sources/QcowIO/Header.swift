/// The qcow2 header: the fields of cluster 0, parsed one by one (all big-endian).
///
/// ```
///  0  magic                    4    4  version                  4
///  8  backing_file_offset      8   16  backing_file_size        4
/// 20  cluster_bits             4   24  size (virtual, bytes)    8
/// 32  crypt_method             4   36  l1_size (entries)        4
/// 40  l1_table_offset          8   48  refcount_table_offset    8
/// 56  refcount_table_clusters  4   60  nb_snapshots             4
/// 64  snapshots_offset         8
/// version 3 only:
/// 72  incompatible_features    8   80  compatible_features      8
/// 88  autoclear_features       8   96  refcount_order           4
/// 100 header_length            4  104  compression_type         1  (when header_length > 104)
/// ```
/// Header extensions follow at `header_length` (72 for version 2), each `type:u32 length:u32 data`
/// padded to eight bytes, until an end extension of type 0.
public struct Qcow2Header: Equatable, Sendable {
    public var version: UInt32 = 3
    public var backingFileOffset: UInt64 = 0
    public var backingFileSize: UInt32 = 0
    public var clusterBits: UInt32 = UInt32(Qcow2.defaultClusterBits)
    public var size: UInt64 = 0
    public var cryptMethod: UInt32 = 0
    public var l1Size: UInt32 = 0
    public var l1TableOffset: UInt64 = 0
    public var refcountTableOffset: UInt64 = 0
    public var refcountTableClusters: UInt32 = 0
    public var snapshotCount: UInt32 = 0
    public var snapshotsOffset: UInt64 = 0
    public var incompatibleFeatures = Qcow2.IncompatibleFeatures()
    public var compatibleFeatures = Qcow2.CompatibleFeatures()
    public var autoclearFeatures: UInt64 = 0
    public var refcountOrder: UInt32 = UInt32(Qcow2.defaultRefcountOrder)
    public var headerLength: UInt32 = UInt32(Qcow2.v3HeaderLengthWithCompressionType)
    public var compressionType: UInt8 = 0

    public init() {}

    public var clusterSize: Int { 1 << Int(clusterBits) }

    /// Parses the fixed fields. Checks only what is needed to read them (magic, version, length);
    /// `Qcow2Validator` judges the values.
    public static func parse(_ b: [UInt8], path: String) throws -> Qcow2Header {
        guard b.count >= Qcow2.v2HeaderLength else {
            throw QcowError.truncated(path: path, what: "header", offset: 0, needed: Qcow2.v2HeaderLength, fileSize: UInt64(b.count))
        }
        let magic = b.be32(0)
        guard magic == Qcow2.magic else { throw QcowError.badMagic(path: path, found: magic) }
        var h = Qcow2Header()
        h.version = b.be32(4)
        guard h.version == 2 || h.version == 3 else {
            throw QcowError.invalidField(path: path, field: "version", value: UInt64(h.version), reason: "only versions 2 and 3 exist")
        }
        h.backingFileOffset = b.be64(8)
        h.backingFileSize = b.be32(16)
        h.clusterBits = b.be32(20)
        h.size = b.be64(24)
        h.cryptMethod = b.be32(32)
        h.l1Size = b.be32(36)
        h.l1TableOffset = b.be64(40)
        h.refcountTableOffset = b.be64(48)
        h.refcountTableClusters = b.be32(56)
        h.snapshotCount = b.be32(60)
        h.snapshotsOffset = b.be64(64)
        if h.version == 2 {
            h.incompatibleFeatures = []
            h.compatibleFeatures = []
            h.autoclearFeatures = 0
            h.refcountOrder = 4
            h.headerLength = UInt32(Qcow2.v2HeaderLength)
            h.compressionType = 0
            return h
        }
        guard b.count >= Qcow2.v3HeaderLength else {
            throw QcowError.truncated(path: path, what: "version 3 header", offset: 0, needed: Qcow2.v3HeaderLength, fileSize: UInt64(b.count))
        }
        h.incompatibleFeatures = .init(rawValue: b.be64(72))
        h.compatibleFeatures = .init(rawValue: b.be64(80))
        h.autoclearFeatures = b.be64(88)
        h.refcountOrder = b.be32(96)
        h.headerLength = b.be32(100)
        if h.headerLength < UInt32(Qcow2.v3HeaderLength) || h.headerLength % 8 != 0 {
            throw QcowError.invalidField(path: path, field: "header_length", value: UInt64(h.headerLength), reason: "must be at least 104 and a multiple of 8")
        }
        if h.headerLength > 104 {
            guard b.count > 104 else {
                throw QcowError.truncated(path: path, what: "compression_type", offset: 104, needed: 1, fileSize: UInt64(b.count))
            }
            h.compressionType = b[104]
        }
        return h
    }

    /// The header's bytes, `headerLength` long (72 for version 2).
    public func serialized() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: version == 2 ? Qcow2.v2HeaderLength : Int(headerLength))
        b.putBE32(Qcow2.magic, at: 0)
        b.putBE32(version, at: 4)
        b.putBE64(backingFileOffset, at: 8)
        b.putBE32(backingFileSize, at: 16)
        b.putBE32(clusterBits, at: 20)
        b.putBE64(size, at: 24)
        b.putBE32(cryptMethod, at: 32)
        b.putBE32(l1Size, at: 36)
        b.putBE64(l1TableOffset, at: 40)
        b.putBE64(refcountTableOffset, at: 48)
        b.putBE32(refcountTableClusters, at: 56)
        b.putBE32(snapshotCount, at: 60)
        b.putBE64(snapshotsOffset, at: 64)
        if version >= 3 {
            b.putBE64(incompatibleFeatures.rawValue, at: 72)
            b.putBE64(compatibleFeatures.rawValue, at: 80)
            b.putBE64(autoclearFeatures, at: 88)
            b.putBE32(refcountOrder, at: 96)
            b.putBE32(headerLength, at: 100)
            if headerLength > 104 { b[104] = compressionType }
        }
        return b
    }
}

/// One header extension as found in the image.
public struct Qcow2HeaderExtension: Equatable, Sendable {
    public var type: UInt32
    public var data: [UInt8]

    public init(type: UInt32, data: [UInt8]) {
        self.type = type
        self.data = data
    }

    /// Parses extensions from `start` to the end extension, within the header cluster `b`.
    public static func parseAll(_ b: [UInt8], start: Int, path: String) throws -> [Qcow2HeaderExtension] {
        var out: [Qcow2HeaderExtension] = []
        var at = start
        while true {
            guard at + 8 <= b.count else {
                throw QcowError.truncated(path: path, what: "header extension", offset: UInt64(at), needed: 8, fileSize: UInt64(b.count))
            }
            let type = b.be32(at)
            let length = Int(b.be32(at + 4))
            if type == Qcow2.ExtensionType.end.rawValue { return out }
            guard length <= b.count - at - 8 else {
                throw QcowError.invalidEntry(path: path, table: "header extension", index: UInt64(out.count), value: UInt64(length),
                                             reason: "extension 0x\(String(type, radix: 16)) of \(length) bytes runs past the header cluster")
            }
            out.append(Qcow2HeaderExtension(type: type, data: Array(b[(at + 8)..<(at + 8 + length)])))
            at += 8 + (length + 7) / 8 * 8
        }
    }

    public static func serializeAll(_ exts: [Qcow2HeaderExtension]) -> [UInt8] {
        var out: [UInt8] = []
        for e in exts {
            var h = [UInt8](repeating: 0, count: 8)
            h.putBE32(e.type, at: 0)
            h.putBE32(UInt32(e.data.count), at: 4)
            out += h + e.data
            out += [UInt8](repeating: 0, count: (8 - e.data.count % 8) % 8)
        }
        out += [UInt8](repeating: 0, count: 8)
        return out
    }
}

/// An entry of the feature name table extension: which bit of which feature set has what name.
public struct Qcow2FeatureName: Equatable, Sendable {
    public enum Kind: UInt8, Sendable { case incompatible = 0, compatible = 1, autoclear = 2 }
    public var kind: UInt8
    public var bit: UInt8
    public var name: String

    public static func parseTable(_ data: [UInt8]) -> [Qcow2FeatureName] {
        stride(from: 0, to: data.count - data.count % 48, by: 48).map { at in
            let raw = data[(at + 2)..<(at + 48)].prefix { $0 != 0 }
            return Qcow2FeatureName(kind: data[at], bit: data[at + 1], name: String(decoding: raw, as: UTF8.self))
        }
    }

    public static func serializeTable(_ names: [Qcow2FeatureName]) -> [UInt8] {
        var out: [UInt8] = []
        for n in names {
            var e = [UInt8](repeating: 0, count: 48)
            e[0] = n.kind
            e[1] = n.bit
            for (i, c) in n.name.utf8.prefix(46).enumerated() { e[2 + i] = c }
            out += e
        }
        return out
    }

    /// The table QEMU writes for the features this library knows.
    public static let standard: [Qcow2FeatureName] = [
        .init(kind: 0, bit: 0, name: "dirty bit"),
        .init(kind: 0, bit: 1, name: "corrupt bit"),
        .init(kind: 0, bit: 2, name: "external data file"),
        .init(kind: 0, bit: 3, name: "compression type"),
        .init(kind: 0, bit: 4, name: "extended L2 entries"),
        .init(kind: 1, bit: 0, name: "lazy refcounts"),
        .init(kind: 2, bit: 0, name: "bitmaps"),
        .init(kind: 2, bit: 1, name: "raw external data"),
    ]
}
