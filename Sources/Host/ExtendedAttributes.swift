import CLinux
import Foundation

// Extended attributes through glibc's calls, which the Glibc module leaves out (CLinux). Kept
// apart from FileSystem.swift, whose `stat` must stay Glibc's.

extension FileSystem {
    /// Extended attributes of a path (not following symlinks), by name.
    public static func xattrs(_ path: String) throws -> [String: [UInt8]] {
        let size = llistxattr(path, nil, 0)
        if size < 0 {
            if errno == ENOTSUP || errno == ENOENT { return [:] }
            throw HostError.systemCall(path: path, operation: "llistxattr", errno: errno)
        }
        if size == 0 { return [:] }
        var names = [CChar](repeating: 0, count: size)
        let n = llistxattr(path, &names, size)
        guard n >= 0 else { throw HostError.systemCall(path: path, operation: "llistxattr", errno: errno) }
        var result: [String: [UInt8]] = [:]
        var start = 0
        for i in 0..<n where names[i] == 0 {
            let name = names[start..<i].withUnsafeBufferPointer { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            start = i + 1
            let vsize = lgetxattr(path, name, nil, 0)
            if vsize < 0 {
                if errno == ENODATA { continue }
                throw HostError.systemCall(path: path, operation: "lgetxattr \(name)", errno: errno)
            }
            var value = [UInt8](repeating: 0, count: vsize)
            let got = value.withUnsafeMutableBytes { lgetxattr(path, name, $0.baseAddress, vsize) }
            guard got >= 0 else { throw HostError.systemCall(path: path, operation: "lgetxattr \(name)", errno: errno) }
            result[name] = Array(value.prefix(got))
        }
        return result
    }

    public static func setXattr(_ path: String, _ name: String, _ value: [UInt8]) throws {
        let r = value.withUnsafeBytes { lsetxattr(path, name, $0.baseAddress, value.count, 0) }
        guard r == 0 else { throw HostError.systemCall(path: path, operation: "lsetxattr \(name)", errno: errno) }
    }
}

extension FileSystem {
    /// When the file at `path` (not followed if a symlink) was made, in nanoseconds since the
    /// epoch (statx's btime); nil where the filesystem does not keep it. Unlike the inode number,
    /// which a filesystem reuses, it tells a folder made again from the one that was removed.
    public static func birthTime(_ path: String) -> Int64? {
        var sx = CLinux.statx()
        guard imgbench_statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, UInt32(STATX_BTIME), &sx) == 0, sx.stx_mask & UInt32(STATX_BTIME) != 0 else { return nil }
        return Int64(sx.stx_btime.tv_sec) * 1_000_000_000 + Int64(sx.stx_btime.tv_nsec)
    }
}
