import Foundation
import Host
import OCI

/// What a layer holds, file by file, with each regular file's content digest (so that a file of
/// the same size with other bytes counts as changed) and the bytes of a few files asked for by
/// path (a package database): what `imgbench diff` compares.
public struct LayerInventory: Sendable {
    public struct File: Sendable, Equatable {
        /// `LayerEntry.kindName`: file, dir, symlink, whiteout, ...
        public var kind: String
        public var size: Int64
        /// SHA-256 of a regular file's content; the link target of a link.
        public var content: String?
    }

    /// By path, as the layer holds it (whiteouts and opaque markers by the path they hide).
    public var files: [String: File] = [:]
    /// The bytes of the regular files asked for that the layer holds.
    public var kept: [String: Data] = [:]

    /// An empty layer (the side of a step that the other build lacks).
    public init() {}

    /// Reads a layer blob (any compression libarchive knows) once, hashing every regular file.
    public static func read(_ blob: String, keeping wanted: Set<String> = []) throws -> LayerInventory {
        let reader = try ArchiveReader(path: blob)
        var inventory = LayerInventory()
        while let ae = try reader.next() {
            let e = LayerReader.entry(ae)
            var file = File(kind: e.kindName, size: e.size)
            switch e.kind {
            case .regular:
                var hasher = Digest.Hasher()
                var data = wanted.contains(e.path) ? Data() : nil
                try reader.readData(entry: e.path) { _, bytes in
                    hasher.update(bytes)
                    data?.append(contentsOf: bytes)
                }
                file.content = hasher.finalize().hex
                if let data { inventory.kept[e.path] = data }
            case let .symlink(target), let .hardlink(target):
                file.content = target
            default:
                break
            }
            inventory.files[e.path] = file
        }
        return inventory
    }

    /// The same for a directory tree (a disk's filesystem copied out): every entry below `root`
    /// by its path relative to it, regular files hashed.
    public static func read(tree root: String, keeping wanted: Set<String> = []) throws -> LayerInventory {
        var inventory = LayerInventory()
        var folders = [""]
        while let relative = folders.popLast() {
            for name in try FileSystem.children(relative.isEmpty ? root : "\(root)/\(relative)") {
                let path = relative.isEmpty ? name : "\(relative)/\(name)"
                let file = try inventory.add(path, at: "\(root)/\(path)", keeping: wanted.contains(path))
                if file.kind == "dir" { folders.append(path) }
            }
        }
        return inventory
    }

    /// One entry of a tree, its content hashed (and kept when asked) if it is a regular file.
    private mutating func add(_ path: String, at full: String, keeping: Bool) throws -> File {
        let st = try FileSystem.lstat(full)
        var file = File(kind: "other", size: Int64(st.st_size))
        if st.isDirectory {
            file.kind = "dir"
        } else if st.isSymlink {
            file.kind = "symlink"
            file.content = try FileSystem.readlink(full)
        } else if st.isRegular {
            file.kind = "file"
            var hasher = Digest.Hasher()
            var data = keeping ? Data() : nil
            try FileSystem.readChunks(full) { bytes in
                hasher.update(bytes)
                data?.append(contentsOf: bytes)
            }
            file.content = hasher.finalize().hex
            if let data { kept[path] = data }
        }
        files[path] = file
        return file
    }
}
