import Foundation
import Host
import QcowIO
import RecipePlan

/// Copying into a root folder: a folder copies its contents, a destination ending in `/` (or
/// several sources) is a folder, owners 0:0 unless `--chown`, modes kept unless `--chmod`, and
/// ADD unpacks local tar archives.
///
/// Every destination is resolved inside the root (`RootedPath`): a symlink in the image, such
/// as `app -> /tmp/x`, is followed as if the root were `/`, so it leads to the root's /tmp/x and
/// never to the host's. A file is created afresh where a symlink (or a file) stood, and nothing
/// here changes an owner, a mode or a time through a symlink.
extension ContextCopy {
    /// Copies (or for ADD, unpacks) the sources into `root` at `destination`.
    /// `accounts`: a folder whose etc/passwd and etc/group name the users (default: `root`).
    public func apply(sources: [String], destination: String, chown: String?, chmod: String?, add: Bool, root: String,
                      accounts: String? = nil) throws {
        let files = try expand(sources)
        let owner = try chown.map { try resolveOwner($0, root: accounts ?? root) } ?? (0, 0)
        let mode = chmod.flatMap { mode_t($0, radix: 8) }
        let dest = LexicalPath.join("/", destination)
        let destIsDir = destination.hasSuffix("/") || files.count > 1
        let links = HardLinks()
        for rel in files {
            let src = rel.isEmpty ? context : "\(context)/\(rel)"
            let st = try FileSystem.lstat(src)
            let name = (rel as NSString).lastPathComponent
            if add && st.isRegular && isArchive(name) {
                try unpack(src, rel: rel, into: dest, owner: owner, root: root, links: links)
            } else if st.isDirectory {
                try makeParents(dest, root: root, owner: owner)
                try copyTree(src, rel: rel, into: dest, owner: owner, mode: mode, root: root, links: links)
            } else {
                let target = destIsDir ? LexicalPath.join(dest, name) : dest
                guard target != "/" else {
                    throw BuildError.recipe(RecipeError(location, "\(rel) cannot be copied onto / itself: end the destination with /"))
                }
                let folder = try makeParents((target as NSString).deletingLastPathComponent, root: root, owner: owner)
                try copyEntry(src, to: "\(folder)/\((target as NSString).lastPathComponent)", st: st, owner: owner, mode: mode, links: links)
            }
        }
    }

    func isArchive(_ name: String) -> Bool {
        [".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst"].contains { name.hasSuffix($0) }
    }

    /// ADD of a local archive: `tar` unpacks it into a fresh private folder of this host (where
    /// nothing but the archive's own entries can be followed, and GNU tar does not follow those),
    /// and the unpacked tree is copied into the root as a folder is, owned by the copy's owner
    /// and with the archive's modes. The staging folder goes, on failure too.
    func unpack(_ src: String, rel: String, into dest: String, owner: (uid_t, gid_t), root: String, links: HardLinks) throws {
        let stage = try TemporaryFolder.make(prefix: "imgbench-add")
        defer { try? FileSystem.removeTree(stage) }
        try Command.check("unpacking \(rel) for ADD", ["tar", "-xf", src, "-C", stage, "--no-same-owner"])
        try makeParents(dest, root: root, owner: owner)
        try copyTree(stage, rel: nil, into: dest, owner: owner, mode: nil, root: root, links: links)
    }

    /// The folder `dir` (a path in the image) resolved inside `root`, as a path on this host;
    /// the folders it needs that do not exist yet are made (owned by the copy's owner, 0755).
    @discardableResult
    func makeParents(_ dir: String, root: String, owner: (uid_t, gid_t)) throws -> String {
        let folders = try RootedPath.makeFolders(dir, in: root)
        for m in folders.made { _ = lchown(m, owner.0, owner.1) }
        return folders.path
    }

    /// Copies the contents of the folder `src` into the image's folder `dir` (which exists),
    /// each child folder resolved inside the root again: a symlink in the image named as a copied
    /// folder is followed inside the root. `rel`: `src` relative to the context, for the ignore
    /// file; nil for a folder outside the context (an unpacked archive), where it does not apply.
    func copyTree(_ src: String, rel: String?, into dir: String, owner: (uid_t, gid_t), mode: mode_t?, root: String,
                  links: HardLinks) throws {
        let here = try RootedPath.resolve(dir, in: root)
        for n in try FileSystem.children(src) {
            let childRel = rel.map { $0.isEmpty ? n : "\($0)/\(n)" }
            if let r = childRel, ignore.isIgnored(r) { continue }
            guard let st = try FileSystem.lstatIfExists("\(src)/\(n)") else { continue }
            guard st.isDirectory else {
                try copyEntry("\(src)/\(n)", to: "\(here)/\(n)", st: st, owner: owner, mode: mode, links: links)
                continue
            }
            let child = LexicalPath.join(dir, n)
            let d = try makeParents(child, root: root, owner: owner)
            // `d` is resolved: none of its components is a symlink, so these follow none.
            _ = lchown(d, owner.0, owner.1)
            _ = Glibc.chmod(d, mode ?? (st.st_mode & 0o7777))
            try copyTree("\(src)/\(n)", rel: childRel, into: child, owner: owner, mode: mode, root: root, links: links)
            try? FileSystem.setTimes(d, st)
        }
    }

    /// Copies one entry that is not a folder to `dst` (whose folder is resolved in the root):
    /// what stands there is replaced, never written through; a FIFO or a device is made anew
    /// (mkfifo, mknod with its numbers), never read. A file linked to one this copy already
    /// made is linked to it again (an archive's hard links stay links).
    func copyEntry(_ src: String, to dst: String, st: stat, owner: (uid_t, gid_t), mode: mode_t?, links: HardLinks) throws {
        if let existing = try FileSystem.lstatIfExists(dst) {
            guard !existing.isDirectory else { throw HostError.io(path: dst, message: "a folder is in the way of \(src)") }
            guard unlink(dst) == 0 else { throw HostError.systemCall(path: dst, operation: "unlink", errno: errno) }
        }
        let perm = mode ?? (st.st_mode & 0o7777)
        switch st.fileType {
        case S_IFLNK:
            guard symlink(try FileSystem.readlink(src), dst) == 0 else { throw HostError.systemCall(path: dst, operation: "symlink", errno: errno) }
            _ = lchown(dst, owner.0, owner.1)
        case S_IFREG where st.st_nlink > 1 && links.made[links.key(st)] != nil:
            // linkat without AT_SYMLINK_FOLLOW: the first copy is a file this copy made.
            guard link(links.made[links.key(st)]!, dst) == 0 else { throw HostError.systemCall(path: dst, operation: "link", errno: errno) }
            return
        case S_IFREG:
            try copyFile(src, to: dst, owner: owner, mode: perm)
            if st.st_nlink > 1 { links.made[links.key(st)] = dst }
        case S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK:
            guard mknod(dst, st.fileType | 0o600, st.st_rdev) == 0 else { throw HostError.systemCall(path: dst, operation: "mknod", errno: errno) }
            // The node was just made here: neither call can follow a symlink. Owner first, as
            // a change of owner clears the set-id bits.
            _ = lchown(dst, owner.0, owner.1)
            guard Glibc.chmod(dst, perm) == 0 else { throw HostError.systemCall(path: dst, operation: "chmod", errno: errno) }
        default:
            throw BuildError.recipe(RecipeError(location, "\(src) is of a file type that cannot be copied"))
        }
        try? FileSystem.setTimes(dst, st)
    }

    /// A regular file's content into a new file (O_EXCL, O_NOFOLLOW), its owner and mode set on
    /// the open descriptor, owner first (a change of owner clears the set-id bits).
    func copyFile(_ src: String, to dst: String, owner: (uid_t, gid_t), mode: mode_t) throws {
        let output = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw HostError.systemCall(path: dst, operation: "create", errno: errno) }
        defer { close(output) }
        try FileSystem.readChunks(src) { try FileSystem.writeAll(output, $0, path: dst) }
        _ = fchown(output, owner.0, owner.1)
        guard fchmod(output, mode) == 0 else { throw HostError.systemCall(path: dst, operation: "chmod", errno: errno) }
    }

    /// The files one copy made for sources with several links, by the source's device and inode.
    final class HardLinks {
        var made: [String: String] = [:]
        func key(_ st: stat) -> String { "\(st.st_dev):\(st.st_ino)" }
    }

    /// `user[:group]`, names looked up in the root's /etc/passwd and /etc/group.
    func resolveOwner(_ spec: String, root: String) throws -> (uid_t, gid_t) {
        guard let o = ContextCopy.owner(spec, root: root) else {
            throw BuildError.recipe(RecipeError(location, "--chown=\(spec): no such user or group in the image's /etc/passwd or /etc/group"))
        }
        return o
    }

    /// A `user[:group]` spec (names or numbers) as uid and gid, names looked up in the root's
    /// /etc/passwd and /etc/group (resolved inside the root); a user alone takes its primary
    /// group. Nil for an unknown name.
    public static func owner(_ spec: String, root: String) -> (uid_t, gid_t)? {
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        func entries(_ file: String) -> [[Substring]] {
            let text = accountsFile("/etc/\(file)", root: root) ?? ""
            return text.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false) }
        }
        let passwd = entries("passwd")
        let user = passwd.first { $0.count > 3 && $0[0] == parts[0] }
        guard let uid = UInt32(parts[0]) ?? user.flatMap({ UInt32($0[2]) }) else { return nil }
        var gid = user.flatMap { UInt32($0[3]) } ?? uid
        if parts.count == 2 {
            guard let g = UInt32(parts[1]) ?? entries("group").first(where: { $0.count > 2 && $0[0] == parts[1] }).flatMap({ UInt32($0[2]) }) else { return nil }
            gid = g
        }
        return (uid, gid)
    }

    /// The text of a file of the image, resolved inside the root; nil unless a regular file
    /// (a FIFO there would never end).
    static func accountsFile(_ path: String, root: String) -> String? {
        guard let p = try? RootedPath.resolve(path, in: root), let st = try? FileSystem.lstatIfExists(p), st.isRegular else { return nil }
        return try? String(contentsOfFile: p, encoding: .utf8)
    }
}
