import Foundation
import Host
import OCI

/// What a tree looked like when a writable root was prepared: enough of every entry's metadata
/// (inode included) to tell later what changed. Drivers without an upper directory (vfs, btrfs)
/// get their diff by comparing the tree with this.
public struct Baseline: Codable, Sendable {
    public struct Record: Codable, Sendable, Equatable {
        var ino: UInt64
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var size: Int64
        var mtimeSec: Int64
        var mtimeNsec: Int64
        var rdev: UInt64
        var link: String?
        var xattrs: [String: Data]
        /// When it was made (statx btime, ns), where the filesystem keeps it: with the inode
        /// number, what tells a folder removed and made again (its inode reused, as ext4 does)
        /// from the same folder.
        var born: Int64?

        init(_ st: stat, path: String) throws {
            ino = UInt64(st.st_ino)
            born = FileSystem.birthTime(path)
            mode = st.st_mode
            uid = st.st_uid
            gid = st.st_gid
            size = st.isDirectory ? 0 : Int64(st.st_size)
            mtimeSec = Int64(st.st_mtim.tv_sec)
            mtimeNsec = Int64(st.st_mtim.tv_nsec)
            rdev = UInt64(st.st_rdev)
            link = st.isSymlink ? try FileSystem.readlink(path) : nil
            xattrs = try FileSystem.xattrs(path).mapValues { Data($0) }
        }

        var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
    }

    /// Records by relative path ("" is the root).
    public var records: [String: Record]
    var childrenByParent: [String: [String]] {
        var m: [String: [String]] = [:]
        for p in records.keys where !p.isEmpty { m[LayerEntry.parent(p), default: []].append(LayerEntry.base(p)) }
        return m
    }

    /// Reads a tree's metadata. Without `inodes`, the baseline can be compared with a different
    /// tree (a copy): entries then match by path, and a directory removed and made again is
    /// seen as a directory whose old entries are gone.
    public static func scan(_ root: String, inodes: Bool = true) throws -> Baseline {
        var records: [String: Record] = [:]
        func walk(_ rel: String) throws {
            let abs = rel.isEmpty ? root : root + "/" + rel
            let st = try FileSystem.lstat(abs)
            var r = try Record(st, path: abs)
            if !inodes {
                r.ino = 0
                r.born = nil
            }
            records[rel] = r
            if st.isDirectory {
                for c in try FileSystem.children(abs) { try walk(LayerEntry.join(rel, c)) }
            }
        }
        try walk("")
        return Baseline(records: records)
    }

    public func save(to path: String) throws {
        try ImageLayout.writeAtomically(JSONEncoder().encode(self), to: path)
    }

    public static func load(_ path: String) throws -> Baseline {
        guard let d = FileManager.default.contents(atPath: path) else { throw HostError.systemCall(path: path, operation: "read", errno: errno) }
        return try CanonicalJSON.decode(Baseline.self, from: d, path: path)
    }
}
