import Foundation
import Host
@testable import Layers
import OCI
import TestSupport

/// Everything about a tree that a layer must reproduce, one line per entry, for comparing
/// trees exactly: type, mode, owner, size, mtime (seconds), content digest, link target, xattrs,
/// and which paths share an inode.
func describeTree(_ root: String, includeDirectoryTimes: Bool = true) throws -> [String] {
    var lines: [String] = []
    var inodes: [UInt64: String] = [:]
    func walk(_ rel: String) throws {
        let abs = rel.isEmpty ? root : root + "/" + rel
        for name in try FileSystem.children(abs) {
            let r = LayerEntry.join(rel, name)
            let p = abs + "/" + name
            let st = try FileSystem.lstat(p)
            var line = "\(r) type=\(String(st.fileType, radix: 8)) mode=\(String(st.st_mode & 0o7777, radix: 8)) owner=\(st.st_uid):\(st.st_gid)"
            if !st.isDirectory || includeDirectoryTimes { line += " mtime=\(st.st_mtim.tv_sec)" }
            if st.isRegular {
                if st.st_nlink > 1, let first = inodes[UInt64(st.st_ino)] {
                    line += " link=\(first)"
                } else {
                    if st.st_nlink > 1 { inodes[UInt64(st.st_ino)] = r }
                    let data = FileManager.default.contents(atPath: p) ?? Data()
                    line += " size=\(st.st_size) sha=\(Digest.of(data).hex.prefix(12))"
                }
            }
            if st.isSymlink { line += " target=\(try FileSystem.readlink(p))" }
            if st.fileType == S_IFCHR || st.fileType == S_IFBLK { line += " dev=\(st.deviceMajor),\(st.deviceMinor)" }
            for (k, v) in try FileSystem.xattrs(p).sorted(by: { $0.key < $1.key }) where LayerCapture.keepXattr(k) {
                line += " xattr:\(k)=\(v.map { String(format: "%02x", $0) }.joined())"
            }
            lines.append(line)
            if st.isDirectory { try walk(r) }
        }
    }
    try walk("")
    return lines
}

/// A tree with one of every kind of entry a layer carries.
func makeRichTree(_ root: String) throws {
    let script = """
    mkdir -p etc/app usr/bin var/empty 'dir with space'
    printf 'hello\\n' > etc/app/config
    head -c 3000000 /dev/urandom > usr/bin/big
    printf 'x' > 'dir with space/ünïcode-名前'
    ln -s ../etc/app/config usr/bin/cfg-link
    ln -s /etc/app/config usr/bin/abs-link
    printf 'shared\\n' > usr/bin/tool
    ln usr/bin/tool usr/bin/tool-again
    mkfifo var/pipe
    chmod 4755 usr/bin/tool
    chmod 1777 var/empty
    chmod 2750 etc/app
    chmod 600 etc/app/config
    setfattr -n user.note -v hello etc/app/config
    truncate -s 5000000 var/sparse
    """
    let r = try sh(script, cwd: root)
    if r.status != 0 { throw LayersError.invalidArgument("making the tree failed: \(r.output)") }
    if isRoot {
        let r2 = try sh("""
        chown 1000:1001 etc/app/config
        chown -h 123:456 usr/bin/cfg-link
        mknod dev-null c 1 3
        mknod dev-loop b 7 0
        setcap cap_net_raw+ep usr/bin/big 2>/dev/null || setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= usr/bin/big
        setfattr -n trusted.secret -v 42 etc/app
        """, cwd: root)
        if r2.status != 0 { throw LayersError.invalidArgument("making the root-only entries failed: \(r2.output)") }
    }
    // Fixed times, so that trees made at different moments compare equal.
    _ = try sh("find . -exec touch -h -d @1700000000 {} +", cwd: root)
}
