/// Guest reads: data clusters (contiguous host runs with one call), zero clusters, compressed
/// clusters, and the backing chain below for what this image leaves unallocated.
extension QcowImage {
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, buffer.count)
        var done = 0
        // Contiguous host runs are read with one call.
        var run: (host: UInt64, dst: Int, count: Int)?
        func flush() throws {
            if let r = run {
                try readRun(into: UnsafeMutableRawBufferPointer(rebasing: buffer[r.dst..<(r.dst + r.count)]), at: r.host)
                run = nil
            }
        }
        while done < buffer.count {
            let guest = offset + UInt64(done)
            let inCluster = geometry.offsetInCluster(guest)
            let n = min(buffer.count - done, clusterSize - inCluster)
            let e = try l2Entry(forGuest: guest)
            if !e.isCompressed, !e.isZero, e.clusterOffset != 0 {
                let host = e.clusterOffset + UInt64(inCluster)
                if let r = run, r.host + UInt64(r.count) == host, r.dst + r.count == done {
                    run!.count += n
                } else {
                    try flush()
                    run = (host, done, n)
                }
            } else {
                try flush()
                try readUnstored(e, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)]), guest: guest, inCluster: inCluster)
            }
            done += n
        }
        try flush()
    }

    /// Reads a run of data clusters' bytes, all of which the file must hold.
    private func readRun(into dst: UnsafeMutableRawBufferPointer, at host: UInt64) throws {
        let n = try file.read(into: dst, at: host)
        if n < dst.count {
            throw QcowError.truncated(path: path, what: "data cluster", offset: host, needed: dst.count, fileSize: try file.size())
        }
    }

    /// Reads what entry `e` maps when it holds no plain data cluster: compressed data, zeros, or
    /// what the backing chain holds.
    private func readUnstored(_ e: L2Entry, into dst: UnsafeMutableRawBufferPointer, guest: UInt64, inCluster: Int) throws {
        if e.isCompressed {
            let cluster = try decompressed(e, guestOffset: guest)
            cluster.withUnsafeBytes { dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[inCluster..<(inCluster + dst.count)])) }
        } else if e.isZero {
            dst.initializeMemory(as: UInt8.self, repeating: 0)
        } else {
            try readBacking(into: dst, at: guest)
        }
    }

    /// Reads what the backing chain holds at `offset` (zeros past its end or without one).
    func readBacking(into dst: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        guard let b = backing, offset < b.virtualSize else {
            dst.initializeMemory(as: UInt8.self, repeating: 0)
            return
        }
        let inside = Int(min(UInt64(dst.count), b.virtualSize - offset))
        try b.read(into: UnsafeMutableRawBufferPointer(rebasing: dst[0..<inside]), at: offset)
        if inside < dst.count {
            UnsafeMutableRawBufferPointer(rebasing: dst[inside...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    func decompressed(_ e: L2Entry, guestOffset: UInt64) throws -> [UInt8] {
        let start = e.compressedOffset(clusterBits: clusterBits)
        if let c = lastCompressed, c.offset == start { return c.data }
        let range = e.compressedRange(clusterBits: clusterBits)
        let length = Int(range.start + range.length - start)
        var input = [UInt8](repeating: 0, count: length)
        // The last compressed cluster of a file may end before its last sector does.
        _ = try input.withUnsafeMutableBytes { try file.read(into: $0, at: start) }
        var out = [UInt8](repeating: 0, count: clusterSize)
        let ok = input.withUnsafeBytes { i in out.withUnsafeMutableBytes { o in Deflate.decompress(i, into: o) } }
        guard ok else { throw QcowError.decompressionFailed(path: path, guestOffset: guestOffset, hostOffset: start) }
        lastCompressed = (start, out)
        return out
    }

    public func blockStatus(at offset: UInt64, length: UInt64) throws -> BlockStatus {
        var kind: BlockStatus.Kind?
        var compressed = false
        var covered: UInt64 = 0
        while covered < length {
            let guest = offset + covered
            var n = min(length - covered, UInt64(clusterSize - geometry.offsetInCluster(guest)))
            let i1 = geometry.l1Index(guest)
            if try i1 >= l1.count || !checkedL1Entry(i1).isAllocated {
                // A whole L2 range with no table: one step, not one per cluster.
                let rangeEnd = (UInt64(i1) + 1) * geometry.bytesPerL2
                n = min(length - covered, rangeEnd - guest)
            }
            let e = try l2Entry(forGuest: guest)
            let s: BlockStatus
            if e.isZero {
                s = BlockStatus(kind: .zero(depth: 0), length: n)
            } else if e.isCompressed || e.clusterOffset != 0 {
                s = BlockStatus(kind: .data(depth: 0), length: n, compressed: e.isCompressed)
            } else if let b = backing, guest < b.virtualSize {
                s = try backingStatus(b, at: guest, length: n)
                // The backing image may report a shorter run than this cluster.
                if s.length < n {
                    if kind == nil { return s }
                    if kind == s.kind && compressed == s.compressed { covered += s.length }
                    break
                }
            } else {
                s = BlockStatus(kind: .unallocated, length: n)
            }
            if let prev = kind, prev != s.kind || compressed != s.compressed { break }
            kind = s.kind
            compressed = s.compressed
            covered += n
        }
        return BlockStatus(kind: kind ?? .unallocated, length: covered, compressed: compressed)
    }

    /// The status of the backing image `b` at `guest`, with depths counted from this image.
    private func backingStatus(_ b: DiskImage, at guest: UInt64, length n: UInt64) throws -> BlockStatus {
        var s = try b.blockStatus(at: guest, length: min(n, b.virtualSize - guest))
        switch s.kind {
        case let .data(d): s.kind = .data(depth: d + 1)
        case let .zero(d): s.kind = .zero(depth: d + 1)
        case .unallocated: break
        }
        return s
    }
}
