/// The storage drivers imgbench knows, by the names the command line and reports use.
public enum StorageDriverKind: String, CaseIterable, Sendable, Codable {
    case overlay
    case fuseOverlayfs = "fuse-overlayfs"
    case btrfs, vfs, unionfs, aufs
}
