import Foundation
import Host
import OCI

/// What an apply did.
public struct ApplyResult: Sendable {
    public var entries: Int = 0
    public var whiteouts: Int = 0
    public var opaqueDirectories: Int = 0
    public var bytes: Int64 = 0
    /// The digest and size of the layer file as it was read.
    public var digest: Digest
    public var size: Int64
    /// Every entry as `LayerReader.list` gives it, when asked for (`listing: true`).
    public var listing: [LayerEntry]?
}

/// Unpacks a layer tar into a directory, honouring whiteouts and opaque directories.
///
/// Nothing is written outside the root: an entry is refused, with an error naming it, when its
/// path is absolute or climbs with `..`, when any directory on its way is a symlink, when a
/// symlink it makes points above the root, when a hardlink names something that is not an
/// earlier entry of this layer, or when it is a device node and this process is not root.
public enum LayerApply {
    /// `progress` is called with the bytes of the layer file read so far and its size.
    @discardableResult
    /// `listing`: also return the layer's entries (`ApplyResult.listing`), read on the way.
    public static func apply(layer file: String, to root: String, expecting digest: Digest? = nil,
                             progress: ((UInt64, UInt64) -> Void)? = nil, stop: (() -> Bool)? = nil,
                             listing: Bool = false) throws -> ApplyResult {
        try apply(try ArchiveReader(path: file), to: root, expecting: digest, progress: progress, asRoot: getuid() == 0, stop: stop,
                  listing: listing)
    }

    /// `asRoot`: whether to make device nodes and set owners (tests pass false to see the
    /// refusals an unprivileged apply gives).
    static func apply(layer file: String, to root: String, expecting digest: Digest?,
                      progress: ((UInt64, UInt64) -> Void)?, asRoot: Bool) throws -> ApplyResult {
        try apply(try ArchiveReader(path: file), to: root, expecting: digest, progress: progress, asRoot: asRoot)
    }

    /// Applies a layer read from a stream, typically a pipe that a capture writes its tar into
    /// while it compresses it, so that the layer is unpacked without being decompressed again.
    /// Takes ownership of `fd`. `name` stands for the stream in errors. Whatever happens, the
    /// stream is read to its end, so that its writer is never left blocked on a full pipe.
    /// `listing`: also return the layer's entries (`ApplyResult.listing`), read on the way.
    @discardableResult
    public static func apply(stream fd: Int32, named name: String, to root: String, stop: (@Sendable () -> Bool)? = nil,
                             listing: Bool = false) throws -> ApplyResult {
        // The reader gets a duplicate, which it closes itself however it ends; this one is read
        // to its end here, then closed.
        defer { discard(stream: fd) }
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw HostError.systemCall(path: name, operation: "dup", errno: errno) }
        return try apply(try ArchiveReader(fd: copy, name: name), to: root, expecting: nil, progress: nil, asRoot: getuid() == 0, stop: stop,
                         listing: listing)
    }

    /// Reads a stream to its end without applying it, and closes it (its writer goes on).
    public static func discard(stream fd: Int32) {
        FileSystem.drain(fd)
        close(fd)
    }

    /// `stop`, asked before each entry, ends the apply early (with `interrupted`).
    static func apply(_ reader: ArchiveReader, to root: String, expecting digest: Digest?,
                      progress: ((UInt64, UInt64) -> Void)?, asRoot: Bool, stop: (() -> Bool)? = nil,
                      listing: Bool = false) throws -> ApplyResult {
        let file = reader.path
        let fileSize = UInt64((try? FileSystem.lstat(file).st_size) ?? 0)
        var state = State(root: root, file: file, isRoot: asRoot)
        var result = ApplyResult(digest: try Digest(parsing: "sha256:" + String(repeating: "0", count: 64)), size: 0)
        if listing { result.listing = [] }
        while let ae = try reader.next() {
            if stop?() == true { throw HostError.interrupted(signal: SIGINT) }
            if listing { result.listing?.append(LayerReader.entry(ae)) }
            try state.apply(ae, reader: reader, result: &result)
            if UInt64(reader.bytesRead) < fileSize { progress?(UInt64(reader.bytesRead), fileSize) }
        }
        try state.finish()
        (result.digest, result.size) = try reader.finishDigest()
        progress?(fileSize, fileSize)
        if let digest, digest != result.digest {
            throw OCIError.digestMismatch(path: file, expected: digest.description, actual: result.digest.description)
        }
        return result
    }

    /// A path of an entry split into its components after refusing anything that could leave
    /// the root. `./` prefixes and `.` components are dropped.
    static func components(_ name: String, file: String, entry: String? = nil, what: String = "path") throws -> [String] {
        if name.hasPrefix("/") {
            throw LayersError.unsafeEntry(path: file, entry: entry ?? name, reason: "absolute \(what) \(name)")
        }
        let parts = name.split(separator: "/", omittingEmptySubsequences: true).map(String.init).filter { $0 != "." }
        if parts.contains("..") {
            throw LayersError.unsafeEntry(path: file, entry: entry ?? name, reason: "\(what) \(name) climbs out with ..")
        }
        return parts
    }

    /// Whether a symlink target, read inside the root from the link's directory, stays inside.
    /// Absolute targets are taken as relative to the root, as a container sees them.
    static func symlinkStaysInside(target: String, linkParent: [String]) -> Bool {
        LexicalPath.staysInside(target, depth: linkParent.count)
    }

    struct State {
        let root: String
        let file: String
        let isRoot: Bool
        var created = Set<String>()
        var directoryTimes: [(String, Int64)] = []

        init(root: String, file: String, isRoot: Bool) {
            self.root = root
            self.file = file
            self.isRoot = isRoot
        }

        func abs(_ parts: [String]) -> String { parts.isEmpty ? root : root + "/" + parts.joined(separator: "/") }

        /// Makes sure every directory leading to `parts` (not the last) is a real directory inside
        /// the root, making missing ones; refuses a symlink on the way.
        func prepareParents(_ parts: [String], entry: String) throws {
            for i in 0..<max(0, parts.count - 1) {
                let p = abs(Array(parts[0...i]))
                if let st = try FileSystem.lstatIfExists(p) {
                    if st.isSymlink {
                        throw LayersError.unsafeEntry(path: file, entry: entry, reason: "\(parts[0...i].joined(separator: "/")) on its path is a symlink")
                    }
                    if !st.isDirectory {
                        throw LayersError.unsafeEntry(path: file, entry: entry, reason: "\(parts[0...i].joined(separator: "/")) on its path is not a directory")
                    }
                } else if mkdir(p, 0o755) != 0 {
                    throw HostError.systemCall(path: p, operation: "mkdir", errno: errno)
                }
            }
        }

        /// Removes what is at a path unless it is a directory that the entry keeps.
        func clear(_ p: String, keepDirectory: Bool) throws {
            guard let st = try FileSystem.lstatIfExists(p) else { return }
            if st.isDirectory && keepDirectory { return }
            try FileSystem.removeTree(p)
        }

        /// Applies one entry: a whiteout, a hardlink to an earlier entry, or a new file with its
        /// metadata.
        mutating func apply(_ ae: ArchiveEntry, reader: ArchiveReader, result: inout ApplyResult) throws {
            let name = ae.path
            let parts = try LayerApply.components(name, file: file)
            guard let last = parts.last else { return } // the root itself: its metadata stays the host's
            try prepareParents(parts, entry: name)
            result.entries += 1
            if last.hasPrefix(LayerEntry.whiteoutPrefix) {
                try applyWhiteout(last, in: Array(parts.dropLast()), entry: name, result: &result)
                return
            }
            let rel = parts.joined(separator: "/")
            if let target = ae.hardlink {
                try link(parts, to: target, entry: name)
                created.insert(rel)
                return
            }
            try create(ae, at: parts, reader: reader, result: &result)
            created.insert(rel)
            try setMetadata(of: abs(parts), from: ae, entry: name)
        }

        /// An opaque marker empties its directory of what earlier layers put there; `.wh.NAME`
        /// removes NAME; aufs' own `.wh..wh.*` entries are housekeeping, with nothing to apply.
        func applyWhiteout(_ last: String, in parent: [String], entry name: String, result: inout ApplyResult) throws {
            if last == LayerEntry.opaqueName {
                let dir = abs(parent)
                if let st = try FileSystem.lstatIfExists(dir), st.isDirectory {
                    for c in try FileSystem.children(dir) where !created.contains((parent + [c]).joined(separator: "/")) {
                        try FileSystem.removeTree(dir + "/" + c)
                    }
                }
                result.opaqueDirectories += 1
            } else if !last.hasPrefix(".wh..wh.") {
                let hidden = String(last.dropFirst(LayerEntry.whiteoutPrefix.count))
                guard !hidden.isEmpty, hidden != ".", hidden != ".." else {
                    throw LayersError.unsafeEntry(path: file, entry: name, reason: "whiteout of \"\(hidden)\"")
                }
                try FileSystem.removeTree(abs(parent + [hidden]))
                result.whiteouts += 1
            }
        }

        /// A hardlink, only to a file that an earlier entry of this layer made.
        func link(_ parts: [String], to targetName: String, entry name: String) throws {
            let tparts = try LayerApply.components(targetName, file: file, entry: name, what: "hardlink target")
            let trel = tparts.joined(separator: "/")
            guard created.contains(trel), trel != parts.joined(separator: "/") else {
                throw LayersError.unsafeEntry(path: file, entry: name, reason: "hardlink to \(targetName), which is not an earlier entry of this layer")
            }
            try prepareParents(tparts, entry: name)
            guard let tst = try FileSystem.lstatIfExists(abs(tparts)), !tst.isDirectory else {
                throw LayersError.unsafeEntry(path: file, entry: name, reason: "hardlink to \(targetName), which is missing or a directory")
            }
            let p = abs(parts)
            try clear(p, keepDirectory: false)
            guard linkat(AT_FDCWD, abs(tparts), AT_FDCWD, p, 0) == 0 else {
                throw HostError.systemCall(path: p, operation: "link", errno: errno)
            }
        }

        /// Makes the entry's file, of its type, in place of what was there (a directory is kept).
        /// Owner, mode and times come after, from `setMetadata`.
        func create(_ ae: ArchiveEntry, at parts: [String], reader: ArchiveReader, result: inout ApplyResult) throws {
            let p = abs(parts), name = ae.path
            switch ae.fileType {
            case S_IFDIR:
                try clear(p, keepDirectory: true)
                if !FileSystem.exists(p), mkdir(p, 0o700) != 0 { throw HostError.systemCall(path: p, operation: "mkdir", errno: errno) }
            case S_IFREG:
                try clear(p, keepDirectory: false)
                result.bytes += try writeFile(p, size: ae.size, from: reader, entry: name)
            case S_IFLNK:
                let target = ae.symlink ?? ""
                guard LayerApply.symlinkStaysInside(target: target, linkParent: Array(parts.dropLast())) else {
                    throw LayersError.unsafeEntry(path: file, entry: name, reason: "symlink to \(target) points outside the root")
                }
                try clear(p, keepDirectory: false)
                guard symlink(target, p) == 0 else { throw HostError.systemCall(path: p, operation: "symlink", errno: errno) }
            case S_IFCHR, S_IFBLK:
                guard isRoot else {
                    throw LayersError.unsupportedEntry(path: file, entry: name, reason: "device nodes need root")
                }
                try clear(p, keepDirectory: false)
                let dev = makeDevice(major: UInt64(ae.rdevMajor), minor: UInt64(ae.rdevMinor))
                guard mknod(p, ae.fileType | 0o600, dev) == 0 else { throw HostError.systemCall(path: p, operation: "mknod", errno: errno) }
            case S_IFIFO:
                try clear(p, keepDirectory: false)
                guard mkfifo(p, 0o600) == 0 else { throw HostError.systemCall(path: p, operation: "mkfifo", errno: errno) }
            default:
                throw LayersError.unsupportedEntry(path: file, entry: name, reason: "file type 0o\(String(ae.fileType, radix: 8)) is not applied")
            }
        }

        /// Writes the current entry's data into a new file at its offsets (holes stay holes) and
        /// gives it the entry's size; returns the bytes written.
        func writeFile(_ p: String, size: Int64, from reader: ArchiveReader, entry name: String) throws -> Int64 {
            let fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw HostError.systemCall(path: p, operation: "create", errno: errno) }
            defer { close(fd) }
            var bytes: Int64 = 0
            try reader.readData(entry: name) { offset, chunk in
                var done = 0
                while done < chunk.count {
                    let n = pwrite(fd, chunk.baseAddress! + done, chunk.count - done, off_t(offset) + off_t(done))
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw HostError.systemCall(path: p, operation: "write", errno: errno)
                    }
                    done += n
                }
                bytes += Int64(chunk.count)
            }
            guard ftruncate(fd, off_t(size)) == 0 else { throw HostError.systemCall(path: p, operation: "truncate", errno: errno) }
            return bytes
        }

        /// Owner (as root), extended attributes, permissions (not of a symlink) and mtime, in
        /// that order; a directory's mtime waits for `finish`, since its entries change it.
        mutating func setMetadata(of p: String, from ae: ArchiveEntry, entry name: String) throws {
            if isRoot {
                guard lchown(p, uid_t(ae.uid), gid_t(ae.gid)) == 0 else {
                    throw HostError.systemCall(path: p, operation: "lchown", errno: errno)
                }
            }
            try setXattrs(p, ae.xattrs, entry: name)
            if ae.fileType != S_IFLNK {
                guard chmod(p, ae.permissions) == 0 else { throw HostError.systemCall(path: p, operation: "chmod", errno: errno) }
            }
            if ae.fileType == S_IFDIR {
                directoryTimes.append((p, ae.mtime))
            } else {
                try setMtime(p, ae.mtime)
            }
        }

        func setXattrs(_ p: String, _ xattrs: [String: [UInt8]], entry name: String) throws {
            for (k, v) in xattrs {
                // Without root, trusted.* and security.* cannot be set; user.* must be.
                if !isRoot && !k.hasPrefix("user.") { continue }
                do { try FileSystem.setXattr(p, k, v) } catch HostError.systemCall(_, _, let e) {
                    throw LayersError.unsupportedEntry(path: file, entry: name, reason: "xattr \(k): \(String(cString: strerror(e)))")
                }
            }
        }

        func setMtime(_ p: String, _ mtime: Int64) throws {
            var ts = [timespec(tv_sec: Int(mtime), tv_nsec: 0), timespec(tv_sec: Int(mtime), tv_nsec: 0)]
            guard utimensat(AT_FDCWD, p, &ts, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw HostError.systemCall(path: p, operation: "utimensat", errno: errno)
            }
        }

        /// Directory times are set last, once nothing more is written into them.
        func finish() throws {
            for (p, t) in directoryTimes.reversed() where FileSystem.exists(p) { try setMtime(p, t) }
        }
    }
}

/// Reads a layer tar's entries without unpacking it.
public enum LayerReader {
    public struct Listing: Sendable {
        public var entries: [LayerEntry]
        public var digest: Digest
        public var size: Int64
        public var compression: String
    }

    public static func list(_ file: String) throws -> Listing {
        let reader = try ArchiveReader(path: file)
        var entries: [LayerEntry] = []
        while let ae = try reader.next() { entries.append(entry(ae)) }
        let compression = reader.filterName
        let (digest, size) = try reader.finishDigest()
        return Listing(entries: entries, digest: digest, size: size, compression: compression)
    }

    /// An entry as the tar describes it: whiteouts and opaque markers by the path they hide.
    static func entry(_ ae: ArchiveEntry) -> LayerEntry {
        var path = ae.path
        while path.hasPrefix("./") { path.removeFirst(2) }
        while path.hasSuffix("/") { path.removeLast() }
        let base = LayerEntry.base(path), parent = LayerEntry.parent(path)
        let kind: LayerEntry.Kind
        if base == LayerEntry.opaqueName {
            path = parent
            kind = .opaque
        } else if base.hasPrefix(LayerEntry.whiteoutPrefix) {
            path = LayerEntry.join(parent, String(base.dropFirst(LayerEntry.whiteoutPrefix.count)))
            kind = .whiteout
        } else if let target = ae.hardlink {
            kind = .hardlink(target: target)
        } else {
            switch ae.fileType {
            case S_IFDIR: kind = .directory
            case S_IFLNK: kind = .symlink(target: ae.symlink ?? "")
            case S_IFCHR: kind = .characterDevice(major: UInt32(ae.rdevMajor), minor: UInt32(ae.rdevMinor))
            case S_IFBLK: kind = .blockDevice(major: UInt32(ae.rdevMajor), minor: UInt32(ae.rdevMinor))
            case S_IFIFO: kind = .fifo
            default: kind = .regular
            }
        }
        return LayerEntry(path: path, kind: kind, mode: UInt32(ae.permissions), uid: UInt32(ae.uid), gid: UInt32(ae.gid),
                          size: ae.size, mtime: ae.mtime, xattrs: ae.xattrs)
    }

    /// The digest and size of the decompressed tar (the diff_id).
    public static func diffID(_ file: String) throws -> (Digest, Int64) {
        let reader = try ArchiveReader(path: file, raw: true)
        var hasher = Digest.Hasher()
        var total: Int64 = 0
        guard try reader.next() != nil else { return (Digest.of(Data()), 0) }
        try reader.readData(entry: "(raw)") { _, chunk in
            hasher.update(chunk)
            total += Int64(chunk.count)
        }
        return (hasher.finalize(), total)
    }
}

/// glibc's makedev(3), which Swift cannot import (it is a macro).
func makeDevice(major: UInt64, minor: UInt64) -> dev_t {
    dev_t(((major & 0xfff) << 8) | ((major & ~0xfff) << 32) | (minor & 0xff) | ((minor & ~0xff) << 12))
}
