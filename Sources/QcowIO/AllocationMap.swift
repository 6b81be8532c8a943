/// What each image of a chain allocates, and which image supplies each guest byte.
public struct AllocationMap: Codable, Equatable, Sendable {
    public struct Link: Codable, Equatable, Sendable {
        /// 0 = the image named, 1 = its backing file, ...
        public var depth: Int
        public var path: String
        public var format: String
        public var virtualSize: UInt64
        /// Guest bytes this image maps to data of its own (shadowed or not).
        public var allocatedBytes: UInt64
        /// Of those, bytes held in compressed clusters.
        public var compressedBytes: UInt64
        /// Guest bytes this image marks as zeros.
        public var zeroBytes: UInt64
        /// Guest bytes of the flattened disk that this image supplies.
        public var visibleBytes: UInt64
        /// The image file's length and the bytes it occupies on disk.
        public var fileBytes: UInt64
        public var diskBytes: UInt64
    }

    /// A run of guest bytes with one source, as `qemu-img map` reports it.
    public struct Extent: Codable, Equatable, Sendable {
        public var start: UInt64
        public var length: UInt64
        /// The depth that supplies the run; nil when no image of the chain allocates it.
        public var depth: Int?
        public var data: Bool
        public var zero: Bool
        public var compressed: Bool
    }

    public var virtualSize: UInt64
    public var chain: [Link]
    /// Guest bytes no image allocates.
    public var unallocatedBytes: UInt64
    /// What the top image alone occupies on disk (for a VM's own overlay, what that VM costs
    /// beyond the chain below it).
    public var topImageDiskBytes: UInt64
    public var extents: [Extent]

    public static func compute(_ image: DiskImage) throws -> AllocationMap {
        let images = image.chain
        var links: [Link] = []
        for (depth, img) in images.enumerated() {
            var link = Link(depth: depth, path: img.path, format: img.formatName, virtualSize: img.virtualSize,
                            allocatedBytes: 0, compressedBytes: 0, zeroBytes: 0, visibleBytes: 0, fileBytes: 0, diskBytes: 0)
            if let q = img as? QcowImage {
                let own = try q.ownAllocation()
                link.allocatedBytes = own.data
                link.compressedBytes = own.compressed
                link.zeroBytes = own.zero
                link.fileBytes = try q.file.size()
                link.diskBytes = try q.file.allocatedBytes()
            } else if let r = img as? RawImage {
                link.fileBytes = try r.file.size()
                link.diskBytes = try r.file.allocatedBytes()
                var at: UInt64 = 0
                while at < r.virtualSize {
                    let s = try r.blockStatus(at: at, length: r.virtualSize - at)
                    if case .data = s.kind { link.allocatedBytes += s.length }
                    at += s.length
                }
            }
            links.append(link)
        }
        var extents: [Extent] = []
        var unallocated: UInt64 = 0
        var at: UInt64 = 0
        let size = image.virtualSize
        while at < size {
            let s = try image.blockStatus(at: at, length: size - at)
            var e = Extent(start: at, length: s.length, depth: nil, data: false, zero: true, compressed: s.compressed)
            switch s.kind {
            case let .data(d):
                e.depth = d; e.data = true; e.zero = false
                links[d].visibleBytes += s.length
            case let .zero(d):
                e.depth = d
                links[d].visibleBytes += s.length
            case .unallocated:
                unallocated += s.length
            }
            if var last = extents.last, last.depth == e.depth, last.data == e.data, last.zero == e.zero,
               last.compressed == e.compressed, last.start + last.length == e.start {
                last.length += e.length
                extents[extents.count - 1] = last
            } else {
                extents.append(e)
            }
            at += s.length
        }
        return AllocationMap(virtualSize: size, chain: links, unallocatedBytes: unallocated,
                             topImageDiskBytes: links[0].diskBytes, extents: extents)
    }
}

extension QcowImage {
    /// Guest bytes this image maps itself: (data, compressed, zero).
    func ownAllocation() throws -> (data: UInt64, compressed: UInt64, zero: UInt64) {
        var data: UInt64 = 0, compressed: UInt64 = 0, zero: UInt64 = 0
        let cs = UInt64(clusterSize)
        for i1 in 0..<l1.count {
            let e1 = try checkedL1Entry(i1)
            guard e1.isAllocated else { continue }
            let t = try l2Table(at: e1.l2Offset, l1Index: i1)
            for (i2, raw) in t.enumerated() where raw != 0 {
                let guest = guestOffset(l1Index: i1, l2Index: i2)
                guard guest < virtualSize else { break }
                let n = min(cs, virtualSize - guest)
                let e = L2Entry(raw: raw)
                if e.isCompressed { data += n; compressed += n }
                else if e.isZero { zero += n }
                else if e.clusterOffset != 0 { data += n }
            }
        }
        return (data, compressed, zero)
    }
}
