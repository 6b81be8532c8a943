/// Guest-content comparison of two disk images, as `qemu-img compare` does it.
public enum ImageComparison {
    public enum Result: Equatable, Sendable {
        case identical
        /// The first guest byte offset whose contents differ.
        case differ(offset: UInt64)
        case sizeMismatch(UInt64, UInt64)
    }

    /// Runs that read as zeros in both images are skipped unread. Without `strict`, images of
    /// different sizes are equal when the larger one's tail reads as zeros.
    public static func compare(_ a: DiskImage, _ b: DiskImage, strict: Bool = false, chunk: Int = 4 << 20) throws -> Result {
        if strict && a.virtualSize != b.virtualSize { return .sizeMismatch(a.virtualSize, b.virtualSize) }
        let size = max(a.virtualSize, b.virtualSize)
        var bufA = [UInt8](repeating: 0, count: chunk)
        var bufB = [UInt8](repeating: 0, count: chunk)
        var at: UInt64 = 0
        while at < size {
            let n = Int(min(UInt64(chunk), size - at))
            let qa = try quietRun(a, at: at, length: UInt64(n))
            let qb = try quietRun(b, at: at, length: UInt64(n))
            let skip = min(qa, qb)
            if skip > 0 {
                at += skip
                continue
            }
            try fill(&bufA, from: a, at: at, count: n)
            try fill(&bufB, from: b, at: at, count: n)
            if bufA[0..<n] != bufB[0..<n] {
                var i = 0
                while bufA[i] == bufB[i] { i += 1 }
                return .differ(offset: at + UInt64(i))
            }
            at += UInt64(n)
        }
        return .identical
    }

    /// Bytes from `at` that read as zeros without data (past the end counts as zeros).
    static func quietRun(_ img: DiskImage, at: UInt64, length: UInt64) throws -> UInt64 {
        guard at < img.virtualSize else { return length }
        let s = try img.blockStatus(at: at, length: min(length, img.virtualSize - at))
        if case .data = s.kind { return 0 }
        return s.length
    }

    static func fill(_ buf: inout [UInt8], from img: DiskImage, at: UInt64, count n: Int) throws {
        buf.withUnsafeMutableBytes { _ = UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]).initializeMemory(as: UInt8.self, repeating: 0) }
        guard at < img.virtualSize else { return }
        let inside = Int(min(UInt64(n), img.virtualSize - at))
        try buf.withUnsafeMutableBytes { try img.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<inside]), at: at) }
    }
}
