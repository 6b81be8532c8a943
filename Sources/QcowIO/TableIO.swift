/// qcow2 tables (L1, L2, refcount table) on disk: arrays of big-endian 64-bit entries.
extension BlockFile {
    func readTable(at offset: UInt64, entries: Int, what: String) throws -> [UInt64] {
        guard entries > 0 else { return [] }
        let bytes = try readExactly(entries * 8, at: offset, what: what)
        return (0..<entries).map { bytes.be64($0 * 8) }
    }

    func writeTable(_ t: [UInt64], at offset: UInt64) throws {
        var b = [UInt8](repeating: 0, count: t.count * 8)
        for (i, v) in t.enumerated() { b.putBE64(v, at: i * 8) }
        try write(b, at: offset)
    }

    /// Writes one table entry (or header field) of eight bytes.
    func writeBE64(_ v: UInt64, at offset: UInt64) throws {
        var b = [UInt8](repeating: 0, count: 8)
        b.putBE64(v, at: 0)
        try write(b, at: offset)
    }
}
