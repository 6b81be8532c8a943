import Foundation
import Host

/// One entry of a layer tar, as captured from a tree or read from an archive.
///
/// Paths are relative to the root, without a leading `./` or `/` and without a trailing slash.
/// A whiteout is stored here by the name of what it hides (`kind == .whiteout`) and written as
/// `DIR/.wh.NAME`; an opaque directory marker is written as `DIR/.wh..wh..opq`.
public struct LayerEntry: Sendable, Equatable, Codable {
    public enum Kind: Sendable, Equatable, Codable {
        case directory
        case regular
        case symlink(target: String)
        case hardlink(target: String)
        case characterDevice(major: UInt32, minor: UInt32)
        case blockDevice(major: UInt32, minor: UInt32)
        case fifo
        case whiteout
        case opaque
    }

    public var path: String
    public var kind: Kind
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: Int64
    public var mtime: Int64
    public var xattrs: [String: [UInt8]]
    /// Where the content of a regular file is read from when the tar is written.
    var source: String?
    var inode: UInt64?
    var links: UInt64 = 1

    public init(path: String, kind: Kind, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0, size: Int64 = 0,
                mtime: Int64 = 0, xattrs: [String: [UInt8]] = [:]) {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime = mtime
        self.xattrs = xattrs
    }

    enum CodingKeys: String, CodingKey { case path, kind, mode, uid, gid, size, mtime, xattrs }

    public static let whiteoutPrefix = ".wh."
    public static let opaqueName = ".wh..wh..opq"

    /// The name this entry has in a tar.
    public var tarName: String {
        switch kind {
        case .whiteout: return Self.join(Self.parent(path), Self.whiteoutPrefix + Self.base(path))
        case .opaque: return Self.join(path, Self.opaqueName)
        case .directory: return path + "/"
        default: return path
        }
    }

    static func parent(_ p: String) -> String {
        guard let i = p.lastIndex(of: "/") else { return "" }
        return String(p[..<i])
    }

    static func base(_ p: String) -> String {
        guard let i = p.lastIndex(of: "/") else { return p }
        return String(p[p.index(after: i)...])
    }

    static func join(_ a: String, _ b: String) -> String { a.isEmpty ? b : a + "/" + b }

    public var kindName: String {
        switch kind {
        case .directory: "dir"
        case .regular: "file"
        case .symlink: "symlink"
        case .hardlink: "hardlink"
        case .characterDevice: "char"
        case .blockDevice: "block"
        case .fifo: "fifo"
        case .whiteout: "whiteout"
        case .opaque: "opaque"
        }
    }
}

extension LayerEntry {
    /// A regular file of this machine written into a tar under another name, mode and owner (a
    /// KubeVirt containerDisk's `disk/NAME.qcow2`, owned 107:107), dated by its mtime.
    public static func hostFile(_ source: String, as path: String, mode: UInt32 = 0o644, uid: UInt32, gid: UInt32) throws -> LayerEntry {
        let st = try FileSystem.lstat(source)
        guard st.isRegular else { throw HostError.io(path: source, message: "not a regular file") }
        var e = LayerEntry(path: path, kind: .regular, mode: mode, uid: uid, gid: gid, size: Int64(st.st_size),
                           mtime: Int64(st.st_mtim.tv_sec))
        e.source = source
        return e
    }
}
