import Foundation
import Host
import OCI

/// Where a layer's changes are read from.
public enum DiffSource: Sendable {
    /// Every entry of a tree: a first layer, or a full export.
    case tree(String)
    /// An overlayfs or fuse-overlayfs upper directory: 0/0 character devices are whiteouts,
    /// `trusted.overlay.opaque=y` (or the `user.` forms) marks an opaque directory.
    case overlayUpper(String)
    /// An aufs read-write branch: whiteouts are already `.wh.NAME` files; aufs' own
    /// `.wh..wh.*` housekeeping entries other than the opaque marker are left out.
    case aufsUpper(String)
    /// A unionfs-fuse copy-on-write branch: deletions are `.unionfs-fuse/PATH_HIDDEN~` files.
    /// Directories that a whiteout needs but the branch lacks are described from `merged`.
    case unionfsUpper(upper: String, merged: String)
    /// A whole tree compared with the baseline taken when it was prepared (or with another
    /// tree, scanned with `Baseline.scan(_:inodes: false)`).
    case compare(root: String, baseline: Baseline)

    /// The directory that holds only what the layer wrote, where there is one: what
    /// `EarlyCompression` watches while the layer's step runs.
    public var upperDirectory: String? {
        switch self {
        case let .overlayUpper(upper), let .aufsUpper(upper), let .unionfsUpper(upper, _): upper
        case .tree, .compare: nil
        }
    }
}

/// How a capture writes its tar.
public struct CaptureOptions: Sendable {
    public var compression: LayerCompression
    public var level: Int?
    /// Clamp every mtime to this (SOURCE_DATE_EPOCH), so rebuilds of the same content match.
    public var sourceDateEpoch: Int64?
    public var threads: Int
    /// The nice value of gzip's compression threads, which are then threads of its own, run as
    /// background work (`Processors.inBackground`: also in the idle cpu cgroup); with one thread
    /// gzip compresses on the caller's, which lowers itself. A capture that runs beside the work
    /// that matters then takes only the CPU time that work leaves. libzstd's own workers are not
    /// lowered. nil: the threads run as the caller does.
    public var nice: Int32?
    /// Called as file content is written: bytes done, bytes in all.
    public var progress: (@Sendable (UInt64, UInt64) -> Void)?
    /// gzip members compressed while the step ran (`EarlyCompression`), taken where a file's
    /// block is unchanged; used when its level is the capture's.
    public var precompressed: PrecompressedFiles?

    public init(compression: LayerCompression = .gzip, level: Int? = nil, sourceDateEpoch: Int64? = nil,
                threads: Int = Processors.count) {
        self.compression = compression
        self.level = level
        self.sourceDateEpoch = sourceDateEpoch
        self.threads = threads
    }

    /// `precompressed`, if its members are at the level this capture compresses at.
    var usablePrecompressed: PrecompressedFiles? {
        precompressed.flatMap { compression == .gzip && $0.level == (level ?? compression.defaultLevel) ? $0 : nil }
    }

    /// SOURCE_DATE_EPOCH from the environment, if set to a number.
    public static var environmentEpoch: Int64? {
        ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"].flatMap { Int64($0) }
    }
}

/// What a capture wrote.
public struct CaptureResult: Sendable {
    public var layer: StoredLayer
    public var entries: [LayerEntry]
    public var seconds: Double
}

public enum LayerCapture {
    /// xattrs that belong to the union filesystem (or the host), never to the image.
    static func keepXattr(_ name: String) -> Bool {
        !(name.hasPrefix("trusted.overlay.") || name.hasPrefix("user.overlay.") || name.hasPrefix("user.fuseoverlayfs.")
            || name == "security.selinux")
    }

    static let opaqueXattrs = ["trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"]

    /// The entries of a diff, in the order they are written: each directory before what it holds,
    /// its opaque marker first, then its children sorted by their names in the tar.
    public static func entries(of source: DiffSource) throws -> [LayerEntry] {
        var list: [LayerEntry]
        switch source {
        case let .tree(root):
            list = try treeEntries(root: root, rel: "")
        case let .overlayUpper(upper):
            list = try upperEntries(root: upper, rel: "", style: .overlay)
        case let .aufsUpper(upper):
            list = try upperEntries(root: upper, rel: "", style: .aufs)
        case let .unionfsUpper(upper, merged):
            list = try unionfsEntries(upper: upper, merged: merged)
        case let .compare(root, baseline):
            list = try compareEntries(root: root, rel: "", baseline: baseline, children: baseline.childrenByParent)
        }
        linkHardlinks(&list)
        return list
    }

    static func entry(_ abs: String, rel: String, _ st: stat) throws -> LayerEntry {
        let kind: LayerEntry.Kind
        switch st.fileType {
        case S_IFDIR: kind = .directory
        case S_IFREG: kind = .regular
        case S_IFLNK: kind = .symlink(target: try FileSystem.readlink(abs))
        case S_IFCHR: kind = .characterDevice(major: st.deviceMajor, minor: st.deviceMinor)
        case S_IFBLK: kind = .blockDevice(major: st.deviceMajor, minor: st.deviceMinor)
        case S_IFIFO: kind = .fifo
        default:
            throw LayersError.unsupportedEntry(path: abs, entry: rel, reason: "sockets are not kept in layers")
        }
        var e = LayerEntry(path: rel, kind: kind, mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
                           size: st.isRegular ? Int64(st.st_size) : 0, mtime: Int64(st.st_mtim.tv_sec),
                           xattrs: try FileSystem.xattrs(abs).filter { keepXattr($0.key) })
        if st.isRegular {
            e.source = abs
            e.inode = UInt64(st.st_ino)
            e.links = UInt64(st.st_nlink)
        }
        return e
    }

    /// Groups of entries under one name of a directory, sorted by that name as the tar spells it.
    static func sorted(_ groups: [(String, [LayerEntry])]) -> [LayerEntry] {
        groups.sorted { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }.flatMap(\.1)
    }

    /// A whiteout of `name` in the directory `rel`, as a group under its name in the tar.
    static func whiteout(_ name: String, in rel: String) -> (String, [LayerEntry]) {
        (LayerEntry.whiteoutPrefix + name, [LayerEntry(path: LayerEntry.join(rel, name), kind: .whiteout)])
    }

    /// What a directory of a tree holds, each child with its path in the layer, its path on disk
    /// and its lstat.
    struct Child {
        let name: String
        let rel: String
        let abs: String
        let st: stat
    }

    /// The children of the directory `rel` below `root`, sockets left out: a layer cannot hold them.
    static func children(of rel: String, in root: String) throws -> [Child] {
        let dir = rel.isEmpty ? root : root + "/" + rel
        return try FileSystem.children(dir).compactMap { name in
            let abs = dir + "/" + name
            let st = try FileSystem.lstat(abs)
            return st.fileType == S_IFSOCK ? nil : Child(name: name, rel: LayerEntry.join(rel, name), abs: abs, st: st)
        }
    }

    static func treeEntries(root: String, rel: String) throws -> [LayerEntry] {
        var groups: [(String, [LayerEntry])] = []
        for c in try children(of: rel, in: root) {
            var g = [try entry(c.abs, rel: c.rel, c.st)]
            if c.st.isDirectory { g += try treeEntries(root: root, rel: c.rel) }
            groups.append((c.name, g))
        }
        return sorted(groups)
    }

    enum UpperStyle { case overlay, aufs }

    static func upperEntries(root: String, rel: String, style: UpperStyle) throws -> [LayerEntry] {
        var groups: [(String, [LayerEntry])] = []
        for c in try children(of: rel, in: root) {
            let (name, st) = (c.name, c.st)
            if style == .aufs && name.hasPrefix(".wh..wh.") {
                // aufs housekeeping (.wh..wh.aufs, .wh..wh.plnk, .wh..wh.orph); the opaque
                // marker is written from the directory.
                continue
            }
            if style == .aufs && name.hasPrefix(LayerEntry.whiteoutPrefix) {
                groups.append(whiteout(String(name.dropFirst(LayerEntry.whiteoutPrefix.count)), in: rel))
                continue
            }
            if style == .overlay && name == LayerEntry.opaqueName { continue }
            // fuse-overlayfs keeps, beside its opaque marker file, a 0/0 device named .wh..opq:
            // its own bookkeeping, not a deletion the image makes.
            if style == .overlay && name.hasPrefix(LayerEntry.whiteoutPrefix) && st.fileType == S_IFCHR { continue }
            if style == .overlay && name.hasPrefix(LayerEntry.whiteoutPrefix) && st.isRegular && st.st_size == 0 {
                // fuse-overlayfs' fallback when it cannot make a 0/0 device: already a whiteout.
                groups.append(whiteout(String(name.dropFirst(LayerEntry.whiteoutPrefix.count)), in: rel))
                continue
            }
            if style == .overlay && st.fileType == S_IFCHR && st.st_rdev == 0 {
                groups.append(whiteout(name, in: rel))
                continue
            }
            var g = [try entry(c.abs, rel: c.rel, st)]
            if st.isDirectory {
                let raw = try FileSystem.xattrs(c.abs)
                let opaque = (style == .overlay && opaqueXattrs.contains { raw[$0] == Array("y".utf8) })
                    || FileSystem.exists(c.abs + "/" + LayerEntry.opaqueName)
                if opaque { g.append(LayerEntry(path: c.rel, kind: .opaque)) }
                g += try upperEntries(root: root, rel: c.rel, style: style)
            }
            groups.append((name, g))
        }
        return sorted(groups)
    }

    static let unionfsMeta = ".unionfs-fuse"
    static let unionfsHidden = "_HIDDEN~"

    static func unionfsEntries(upper: String, merged: String) throws -> [LayerEntry] {
        // Hidden paths from the metadata tree, as relative paths.
        var hidden = Set<String>()
        func collect(_ rel: String) throws {
            let dir = upper + "/" + unionfsMeta + (rel.isEmpty ? "" : "/" + rel)
            for name in try FileSystem.children(dir) {
                let st = try FileSystem.lstat(dir + "/" + name)
                if name.hasSuffix(unionfsHidden) {
                    hidden.insert(LayerEntry.join(rel, String(name.dropLast(unionfsHidden.count))))
                } else if st.isDirectory {
                    try collect(LayerEntry.join(rel, name))
                }
            }
        }
        if FileSystem.exists(upper + "/" + unionfsMeta) { try collect("") }

        func walk(_ rel: String, opaque: Bool) throws -> [LayerEntry] {
            let dir = rel.isEmpty ? upper : upper + "/" + rel
            var names = Set(FileSystem.exists(dir) ? try FileSystem.children(dir) : [])
            if rel.isEmpty { names.remove(unionfsMeta) }
            // Inside an opaque directory nothing below shows through: no whiteouts are needed.
            if opaque { hidden = hidden.filter { !$0.hasPrefix(rel + "/") } }
            let hiddenHere = hidden.filter { LayerEntry.parent($0) == rel }.map { LayerEntry.base($0) }
            // Directories that only lead to a hidden path further down.
            let through = Set(hidden.filter { $0.hasPrefix(rel.isEmpty ? "" : rel + "/") && LayerEntry.parent($0) != rel }
                .map { p -> String in
                    let rest = rel.isEmpty ? p : String(p.dropFirst(rel.count + 1))
                    return String(rest.split(separator: "/")[0])
                })
            var groups: [(String, [LayerEntry])] = []
            for name in names.union(through) {
                let childRel = LayerEntry.join(rel, name)
                let inUpper = names.contains(name)
                let abs = (inUpper ? upper : merged) + "/" + childRel
                guard let st = try FileSystem.lstatIfExists(abs) else { continue }
                if st.fileType == S_IFSOCK { continue }
                var g = [try entry(abs, rel: childRel, st)]
                if st.isDirectory {
                    // A directory removed and made again: the branch has it and also hides it.
                    let isOpaque = inUpper && hidden.contains(childRel)
                    if isOpaque { g.append(LayerEntry(path: childRel, kind: .opaque)) }
                    g += try walk(childRel, opaque: isOpaque)
                }
                groups.append((name, g))
            }
            for name in hiddenHere where !names.contains(name) {
                groups.append(whiteout(name, in: rel))
            }
            return sorted(groups)
        }
        return try walk("", opaque: false)
    }

    static func compareEntries(root: String, rel: String, baseline: Baseline, children: [String: [String]]) throws -> [LayerEntry] {
        let dir = rel.isEmpty ? root : root + "/" + rel
        let now = try FileSystem.children(dir)
        let nowSet = Set(now)
        var groups: [(String, [LayerEntry])] = []
        for name in now {
            let childRel = LayerEntry.join(rel, name)
            let abs = dir + "/" + name
            let st = try FileSystem.lstat(abs)
            if st.fileType == S_IFSOCK { continue }
            let before = baseline.records[childRel]
            let e = try entry(abs, rel: childRel, st)
            // A baseline of another tree has no inode numbers (0): entries are matched by path.
            var r = try Baseline.Record(st, path: abs)
            if let b = before, b.mode & S_IFMT == st.fileType, b.ino == 0 || (b.ino == UInt64(st.st_ino) && (b.born == nil || b.born == r.born)) {
                if b.ino == 0 {
                    r.ino = 0
                    r.born = nil
                }
                let changed = r != b
                if st.isDirectory {
                    let sub = try compareEntries(root: root, rel: childRel, baseline: baseline, children: children)
                    if changed || !sub.isEmpty { groups.append((name, [e] + sub)) }
                } else if changed {
                    groups.append((name, [e]))
                }
            } else {
                var g = [e]
                if st.isDirectory {
                    // A directory made where one was removed hides everything the old one held.
                    if before?.isDirectory == true { g.append(LayerEntry(path: childRel, kind: .opaque)) }
                    g += try treeEntries(root: root, rel: childRel)
                }
                groups.append((name, g))
            }
        }
        for name in children[rel] ?? [] where !nowSet.contains(name) {
            groups.append(whiteout(name, in: rel))
        }
        return sorted(groups)
    }

    /// Regular files that share an inode inside the layer: the first in order keeps the content,
    /// the others become hardlinks to it.
    static func linkHardlinks(_ list: inout [LayerEntry]) {
        var first: [UInt64: String] = [:]
        for i in list.indices where list[i].kind == .regular && list[i].links > 1 {
            guard let ino = list[i].inode else { continue }
            if let target = first[ino] {
                list[i].kind = .hardlink(target: target)
                list[i].size = 0
                list[i].source = nil
            } else {
                first[ino] = list[i].path
            }
        }
    }

    /// Captures a diff into a blob of `store`: entries written as a PAX tar, compressed on every
    /// core, the diff_id and the blob digest taken in the same pass.
    /// `tee`, when given, receives the uncompressed tar as it is written (and is finished with it).
    public static func capture(_ source: DiffSource, into store: BlobStore, options: CaptureOptions = .init(),
                               tee: ByteSink? = nil) throws -> CaptureResult {
        let start = Date()
        let list = try entries(of: source)
        let layer = try write(list, into: store, options: options, tee: tee)
        return CaptureResult(layer: layer, entries: list, seconds: Date().timeIntervalSince(start))
    }

    /// Writes entries as a layer blob.
    public static func write(_ list: [LayerEntry], into store: BlobStore, options: CaptureOptions,
                             tee: ByteSink? = nil) throws -> StoredLayer {
        let blob = try store.writer()
        do {
            let compressor = try options.compression.compressor(into: blob, level: options.level, threads: options.threads, nice: options.nice, path: blob.tempPath)
            let hashing = HashingSink(next: tee.map { TeeSink(compressor, $0) } ?? compressor)
            try writeTar(list, to: hashing, path: blob.tempPath, epoch: options.sourceDateEpoch, progress: options.progress,
                         gzip: (compressor as? ParallelGzip).map { ($0, options.usablePrecompressed) })
            try hashing.finish()
            let (digest, size) = try blob.commit()
            return StoredLayer(descriptor: Descriptor(mediaType: options.compression.mediaType, digest: digest, size: size),
                               diffID: hashing.digest, uncompressedSize: hashing.count)
        } catch {
            blob.abort()
            throw error
        }
    }

    /// Captures a diff into a plain file (renamed into place when complete), returning the same
    /// description a blob store would give it.
    public static func capture(_ source: DiffSource, toFile path: String, options: CaptureOptions = .init()) throws -> CaptureResult {
        let start = Date()
        let list = try entries(of: source)
        let file = try FileSink(path: path)
        let compressed = HashingSink(next: file)
        let compressor = try options.compression.compressor(into: compressed, level: options.level, threads: options.threads, nice: options.nice, path: path)
        let hashing = HashingSink(next: compressor)
        try writeTar(list, to: hashing, path: path, epoch: options.sourceDateEpoch, progress: options.progress,
                     gzip: (compressor as? ParallelGzip).map { ($0, options.usablePrecompressed) })
        try hashing.finish()
        let layer = StoredLayer(descriptor: Descriptor(mediaType: options.compression.mediaType, digest: compressed.digest, size: compressed.count),
                                diffID: hashing.digest, uncompressedSize: hashing.count)
        return CaptureResult(layer: layer, entries: list, seconds: Date().timeIntervalSince(start))
    }

    /// Writes entries as a tar (no compression) into a sink. With `gzip`, the compressor at the
    /// end of the sink's chain, a file of `ParallelGzip.ownMembersFrom` bytes or more has its
    /// content in members of its own, offered from `early` when it was compressed beforehand.
    static func writeTar(_ list: [LayerEntry], to sink: ByteSink, path: String, epoch: Int64?,
                         progress: (@Sendable (UInt64, UInt64) -> Void)? = nil,
                         gzip: (compressor: ParallelGzip, early: PrecompressedFiles?)? = nil) throws {
        let total = list.reduce(UInt64(0)) { $0 + ($1.kind == .regular ? UInt64($1.size) : 0) }
        var done: UInt64 = 0
        let w = try ArchiveWriter(sink: sink, path: path)
        let header = try ArchiveEntry(path: path)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        for e in list {
            describe(e, in: header, epoch: epoch)
            try w.writeHeader(header)
            if case .regular = e.kind, let src = e.source, e.size > 0 {
                // The tar writer is unblocked, so the header is in the sink by now.
                let own = e.size >= ParallelGzip.ownMembersFrom ? gzip : nil
                try own?.compressor.cut()
                try writeContent(of: src, size: e.size, name: e.tarName, to: w, buffer: buffer, opened: { st in
                    if let own, let early = own.early, Int64(st.st_size) == e.size, let m = early.members(for: st) {
                        own.compressor.expect(m, from: early)
                    }
                }) { n in
                    done += UInt64(n)
                    progress?(done, total)
                }
                try own?.compressor.cut()
            }
        }
        try w.close()
        if done != total || total == 0 { progress?(total, total) }
    }

    /// Fills `header` with an entry's tar header, its mtime clamped to `epoch`. Whiteouts and
    /// opaque markers are empty files owned by root, dated `epoch` (or 0), with no permissions.
    static func describe(_ e: LayerEntry, in header: ArchiveEntry, epoch: Int64?) {
        header.clear()
        header.path = e.tarName
        header.mtime = epoch.map { min($0, e.mtime) } ?? e.mtime
        header.uid = Int64(e.uid)
        header.gid = Int64(e.gid)
        var type: mode_t = S_IFREG
        var perm = mode_t(e.mode)
        switch e.kind {
        case .directory: type = S_IFDIR
        case .regular: header.size = e.size
        case let .symlink(target):
            type = S_IFLNK
            header.symlink = target
        case let .hardlink(target):
            header.hardlink = target
            header.size = 0
        case let .characterDevice(major, minor):
            type = S_IFCHR
            (header.rdevMajor, header.rdevMinor) = (dev_t(major), dev_t(minor))
        case let .blockDevice(major, minor):
            type = S_IFBLK
            (header.rdevMajor, header.rdevMinor) = (dev_t(major), dev_t(minor))
        case .fifo: type = S_IFIFO
        case .whiteout, .opaque:
            header.size = 0
            (header.uid, header.gid) = (0, 0)
            header.mtime = epoch ?? 0
            perm = 0
        }
        header.mode = type | perm
        header.xattrs = e.xattrs
    }

    /// Copies the `size` bytes of a regular file into the tar, after its header; `wrote` is told
    /// the size of each piece. A file that shrank since it was listed is an error: its header
    /// promised more.
    /// `opened` is given the fstat of the file as opened.
    static func writeContent(of src: String, size: Int64, name: String, to w: ArchiveWriter,
                             buffer: UnsafeMutableRawBufferPointer, opened: (stat) -> Void = { _ in },
                             wrote: (Int) -> Void) throws {
        var remaining = size
        let fd = FileSystem.openForReading(src)
        guard fd >= 0 else { throw HostError.systemCall(path: src, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw HostError.systemCall(path: src, operation: "fstat", errno: errno) }
        opened(st)
        while remaining > 0 {
            let n = read(fd, buffer.baseAddress, min(buffer.count, Int(remaining)))
            if n < 0 {
                if errno == EINTR { continue }
                throw HostError.systemCall(path: src, operation: "read", errno: errno)
            }
            if n == 0 {
                throw LayersError.archive(path: src, entry: name, message: "file shrank by \(remaining) bytes while it was captured")
            }
            try w.writeData(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), name: name)
            remaining -= Int64(n)
            wrote(n)
        }
    }
}
