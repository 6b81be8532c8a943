#if canImport(Glibc)
import Glibc
#endif

/// Byte counts as people write and read them: 512, 64K, 2M, 10G, 1T (powers of 1024), with an
/// optional B or iB; shown with binary units.
public enum ByteCount {
    public static func parse(_ text: String) -> UInt64? {
        var s = String(text.filter { !$0.isWhitespace }).uppercased()
        if s.hasSuffix("IB") { s.removeLast(2) } else if s.hasSuffix("B") { s.removeLast() }
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var multiplier: UInt64 = 1
        if let last = s.last, let m = units[last] { multiplier = m; s.removeLast() }
        guard let n = UInt64(s), n <= UInt64.max / multiplier else { return nil }
        return n * multiplier
    }

    public static func format(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(bytes)
        var i = 0
        while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        if i == 0 { return "\(bytes) B" }
        let tenths = Int((v * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) \(units[i])"
    }
}
