import Foundation
import Host
import QcowIO
import RecipePlan

/// Copying into a root folder: a folder copies its contents, a destination ending in `/` (or
/// several sources) is a folder, owners 0:0 unless `--chown`, modes kept unless `--chmod`, and
/// ADD unpacks local tar archives.
extension ContextCopy {
    /// Copies (or for ADD, unpacks) the sources into `root` at `destination`.
    /// `accounts`: a folder whose etc/passwd and etc/group name the users (default: `root`).
    public func apply(sources: [String], destination: String, chown: String?, chmod: String?, add: Bool, root: String,
                      accounts: String? = nil) throws {
        let files = try expand(sources)
        let owner = try chown.map { try resolveOwner($0, root: accounts ?? root) } ?? (0, 0)
        let mode = chmod.flatMap { mode_t($0, radix: 8) }
        let destIsDir = destination.hasSuffix("/") || files.count > 1
        for rel in files {
            let src = rel.isEmpty ? context : "\(context)/\(rel)"
            var st = stat()
            guard lstat(src, &st) == 0 else { throw HostError.io(path: src, message: String(cString: strerror(errno))) }
            let name = (rel as NSString).lastPathComponent
            if add && (st.st_mode & S_IFMT) == S_IFREG && isArchive(name) {
                let dir = root + LexicalPath.join("/", destination)
                try makeParents(dir, root: root, owner: owner)
                try Command.check("unpacking \(rel) for ADD", ["tar", "-xf", src, "-C", dir, "--no-same-owner"])
                continue
            }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                let dir = root + LexicalPath.join("/", destination)
                try makeParents(dir, root: root, owner: owner)
                try copyTree(src, rel: rel, to: dir, owner: owner, mode: mode, root: root)
            } else {
                let target = destIsDir ? LexicalPath.join(destination, name) : LexicalPath.join("/", destination)
                try makeParents((root + target as NSString).deletingLastPathComponent, root: root, owner: owner)
                try copyEntry(src, to: root + target, st: st, owner: owner, mode: mode)
            }
        }
    }

    func isArchive(_ name: String) -> Bool {
        [".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst"].contains { name.hasSuffix($0) }
    }

    /// Folders the copy needs that do not exist yet are made (owned by the copy's owner, 0755).
    func makeParents(_ dir: String, root: String, owner: (uid_t, gid_t)) throws {
        var missing: [String] = []
        var d = dir
        while d.count > root.count, !FileManager.default.fileExists(atPath: d) {
            missing.append(d)
            d = (d as NSString).deletingLastPathComponent
        }
        for m in missing.reversed() {
            guard mkdir(m, 0o755) == 0 || errno == EEXIST else { throw HostError.io(path: m, message: String(cString: strerror(errno))) }
            _ = lchown(m, owner.0, owner.1)
        }
    }

    func copyTree(_ src: String, rel: String, to dst: String, owner: (uid_t, gid_t), mode: mode_t?, root: String) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: src).sorted()
        for n in names {
            let childRel = rel.isEmpty ? n : "\(rel)/\(n)"
            if ignore.isIgnored(childRel) { continue }
            var st = stat()
            guard lstat("\(src)/\(n)", &st) == 0 else { continue }
            if (st.st_mode & S_IFMT) == S_IFDIR {
                let d = "\(dst)/\(n)"
                var dst2 = stat()
                if lstat(d, &dst2) != 0 {
                    guard mkdir(d, st.st_mode & 0o7777) == 0 else { throw HostError.io(path: d, message: String(cString: strerror(errno))) }
                }
                _ = lchown(d, owner.0, owner.1)
                _ = Glibc.chmod(d, mode ?? (st.st_mode & 0o7777))
                try copyTree("\(src)/\(n)", rel: childRel, to: d, owner: owner, mode: mode, root: root)
                var times = [st.st_atim, st.st_mtim]
                utimensat(AT_FDCWD, d, &times, AT_SYMLINK_NOFOLLOW)
            } else {
                try copyEntry("\(src)/\(n)", to: "\(dst)/\(n)", st: st, owner: owner, mode: mode)
            }
        }
    }

    func copyEntry(_ src: String, to dst: String, st: stat, owner: (uid_t, gid_t), mode: mode_t?) throws {
        var existing = stat()
        if lstat(dst, &existing) == 0 && (existing.st_mode & S_IFMT) != S_IFDIR { unlink(dst) }
        switch st.st_mode & S_IFMT {
        case S_IFLNK:
            let target = try FileManager.default.destinationOfSymbolicLink(atPath: src)
            guard symlink(target, dst) == 0 else { throw HostError.io(path: dst, message: String(cString: strerror(errno))) }
        case S_IFREG:
            let input = open(src, O_RDONLY | O_CLOEXEC)
            guard input >= 0 else { throw HostError.io(path: src, message: String(cString: strerror(errno))) }
            defer { close(input) }
            let output = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard output >= 0 else { throw HostError.io(path: dst, message: String(cString: strerror(errno))) }
            defer { close(output) }
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = read(input, &buf, buf.count)
                if n < 0 { throw HostError.io(path: src, message: String(cString: strerror(errno))) }
                if n == 0 { break }
                var done = 0
                while done < n {
                    let w = buf.withUnsafeBytes { write(output, $0.baseAddress! + done, n - done) }
                    if w < 0 { throw HostError.io(path: dst, message: String(cString: strerror(errno))) }
                    done += w
                }
            }
            _ = fchown(output, owner.0, owner.1)
            _ = fchmod(output, mode ?? (st.st_mode & 0o7777))
        default:
            throw BuildError.recipe(RecipeError(location, "\(src) is neither a file, a folder nor a symlink"))
        }
        _ = lchown(dst, owner.0, owner.1)
        var times = [st.st_atim, st.st_mtim]
        utimensat(AT_FDCWD, dst, &times, AT_SYMLINK_NOFOLLOW)
    }

    /// `user[:group]`, names looked up in the root's /etc/passwd and /etc/group.
    func resolveOwner(_ spec: String, root: String) throws -> (uid_t, gid_t) {
        guard let o = ContextCopy.owner(spec, root: root) else {
            throw BuildError.recipe(RecipeError(location, "--chown=\(spec): no such user or group in the image's /etc/passwd or /etc/group"))
        }
        return o
    }

    /// A `user[:group]` spec (names or numbers) as uid and gid, names looked up in the root's
    /// /etc/passwd and /etc/group; a user alone takes its primary group. Nil for an unknown name.
    public static func owner(_ spec: String, root: String) -> (uid_t, gid_t)? {
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        func entries(_ file: String) -> [[Substring]] {
            let text = (try? String(contentsOfFile: "\(root)/etc/\(file)", encoding: .utf8)) ?? ""
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
}
