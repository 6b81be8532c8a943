/// Something that holds a guest disk: a qcow2 image (with its backing chain) or a raw file.
///
/// Not `Sendable`: an image caches what it reads (a qcow2 image its tables) without a lock,
/// so it stays with the one task that opened it.
public protocol DiskImage: AnyObject {
    var path: String { get }
    var formatName: String { get }
    var virtualSize: UInt64 { get }
    /// Reads guest bytes; the range must lie within the virtual size.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
    /// The image this one falls through to for unallocated clusters, if any.
    var backingImage: DiskImage? { get }
    /// Where the bytes of `[offset, offset+length)` come from, starting at `offset`: the length of
    /// the first run of uniform status and whether it reads as zeros without reading data.
    func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus
}

/// The status of a run of guest bytes.
public struct BlockStatus: Equatable, Sendable {
    public enum Kind: Equatable, Sendable {
        /// Holds data in the image at `depth` (0 = this image).
        case data(depth: Int)
        /// Reads as zeros through an explicit zero marking at `depth`.
        case zero(depth: Int)
        /// No image of the chain allocates it: reads as zeros.
        case unallocated
    }
    public var kind: Kind
    public var length: UInt64
    /// True for a data run made of compressed clusters.
    public var compressed: Bool = false
}

extension DiskImage {
    /// Reads `count` bytes at `offset` into a new array.
    public func read(count: Int, at offset: UInt64) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return out
    }

    /// Throws `outOfRange` unless `[offset, offset+length)` lies within the virtual size.
    func checkRange(_ offset: UInt64, _ length: Int) throws {
        guard offset <= virtualSize, UInt64(length) <= virtualSize - offset else {
            throw QcowError.outOfRange(path: path, offset: offset, length: length, virtualSize: virtualSize)
        }
    }

    /// The images of the chain from this one down to the bottom.
    public var chain: [DiskImage] {
        var out: [DiskImage] = [self]
        while let b = out.last!.backingImage { out.append(b) }
        return out
    }
}

/// A raw disk image: guest offset = file offset; the file may be shorter than `virtualSize`
/// (reads past its end are zeros), and holes report as unallocated. Not `Sendable`: its
/// `BlockFile` is not.
public final class RawImage: DiskImage {
    public let path: String
    public let file: BlockFile
    public let virtualSize: UInt64
    public var formatName: String { "raw" }
    public var backingImage: DiskImage? { nil }

    public init(path: String, writable: Bool = false) throws {
        self.path = path
        file = try BlockFile(path: path, mode: writable ? .readWrite : .readOnly)
        virtualSize = try file.size()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, buffer.count)
        let n = try file.read(into: buffer, at: offset)
        if n < buffer.count { UnsafeMutableRawBufferPointer(rebasing: buffer[n...]).initializeMemory(as: UInt8.self, repeating: 0) }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try file.write(buffer, at: offset)
    }

    public func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        let end = offset + length
        guard let data = file.nextData(from: offset), data < end else {
            return BlockStatus(kind: .unallocated, length: length)
        }
        if data > offset { return BlockStatus(kind: .unallocated, length: data - offset) }
        let hole = file.nextHole(from: offset)
        return BlockStatus(kind: .data(depth: 0), length: min(hole, end) - offset)
    }
}

/// Opens a disk image by probing its first bytes: qcow2 by its magic, raw otherwise, unless
/// `format` says which.
public enum DiskImages {
    public static func open(_ path: String, format: String? = nil, writable: Bool = false) throws -> DiskImage {
        try open(path, format: format, writable: writable, seen: [], depth: 0)
    }

    static func open(_ path: String, format: String?, writable: Bool, seen: Set<String>, depth: Int) throws -> DiskImage {
        let fmt = try format ?? probe(path)
        switch fmt {
        case "qcow2": return try QcowImage(path: path, writable: writable, seen: seen, depth: depth)
        case "raw": return try RawImage(path: path, writable: writable)
        default: throw QcowError.invalidArgument("\(path): unsupported image format '\(fmt)' (qcow2 or raw)")
        }
    }

    public static func probe(_ path: String) throws -> String {
        let f = try BlockFile(path: path, mode: .readOnly)
        var magic = [UInt8](repeating: 0, count: 4)
        let n = try magic.withUnsafeMutableBytes { try f.read(into: $0, at: 0) }
        return n == 4 && magic.be32(0) == Qcow2.magic ? "qcow2" : "raw"
    }
}
