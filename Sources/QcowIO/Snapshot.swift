/// An internal snapshot, as listed in the snapshot table. Read and counted, never written.
///
/// ```
///  0 l1_table_offset  8    8 l1_size        4   12 id_str_size  2   14 name_size  2
/// 16 date_sec         4   20 date_nsec      4   24 vm_clock_nsec 8  32 vm_state_size 4
/// 36 extra_data_size  4   40 extra data, id string, name; the entry padded to eight bytes
/// ```
public struct Qcow2Snapshot: Equatable, Sendable {
    public var l1TableOffset: UInt64
    public var l1Size: UInt32
    public var id: String
    public var name: String
    public var dateSeconds: UInt32
    /// Guest disk size at the time of the snapshot (extra data, version 3), when recorded.
    public var diskSize: UInt64?

    static let maxTableBytes = 64 * 1024 * 1024

    static func readTable(_ file: BlockFile, header h: Qcow2Header) throws -> [Qcow2Snapshot] {
        guard h.snapshotCount > 0 else { return [] }
        let fileSize = try file.size()
        var out: [Qcow2Snapshot] = []
        var at = h.snapshotsOffset
        for i in 0..<Int(h.snapshotCount) {
            guard at - h.snapshotsOffset < UInt64(maxTableBytes) else {
                throw QcowError.invalidField(path: file.path, field: "nb_snapshots", value: UInt64(h.snapshotCount), reason: "snapshot table exceeds \(maxTableBytes) bytes")
            }
            let fixed = try file.readExactly(40, at: at, what: "snapshot \(i) header")
            let extra = Int(fixed.be32(36))
            let idLen = Int(fixed.be16(12))
            let nameLen = Int(fixed.be16(14))
            guard extra <= 1024 else {
                throw QcowError.invalidEntry(path: file.path, table: "snapshot", index: UInt64(i), value: UInt64(extra), reason: "extra data of \(extra) bytes exceeds 1024")
            }
            let varLen = extra + idLen + nameLen
            guard at + 40 + UInt64(varLen) <= fileSize else {
                throw QcowError.truncated(path: file.path, what: "snapshot \(i)", offset: at, needed: 40 + varLen, fileSize: fileSize)
            }
            let rest = try file.readExactly(varLen, at: at + 40, what: "snapshot \(i)")
            let l1Size = fixed.be32(8)
            guard UInt64(l1Size) * 8 <= UInt64(Qcow2.maxL1Bytes) else {
                throw QcowError.invalidEntry(path: file.path, table: "snapshot", index: UInt64(i), value: UInt64(l1Size), reason: "L1 table of snapshot too large")
            }
            out.append(Qcow2Snapshot(
                l1TableOffset: fixed.be64(0), l1Size: l1Size,
                id: String(decoding: rest[extra..<(extra + idLen)], as: UTF8.self),
                name: String(decoding: rest[(extra + idLen)..<varLen], as: UTF8.self),
                dateSeconds: fixed.be32(16),
                diskSize: extra >= 16 ? rest.be64(8) : nil))
            at += UInt64((40 + varLen + 7) / 8 * 8)
        }
        return out
    }
}
