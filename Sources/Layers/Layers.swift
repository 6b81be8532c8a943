import Host
import OCI

// The Layers module.
//
// File-level layers: what a build step changed, as an OCI layer, and the storage drivers that
// give a step its writable root. Knows nothing of VMs.
//
// ```
// DiffSource ── LayerCapture ──> PAX tar ──> gzip on every core | zstd | none ──> BlobStore
//   (overlay upper dir,             (libarchive)     diff_id hashed on the way     (blobs/sha256)
//    unionfs branch, aufs branch,                                                     │
//    tree compared with Baseline)                                                 ImageLayout
//                                                                            (index.json, manifest,
// StorageDriver: prepare(id, parent) ─> writable root ─> diffSource(id)       config, tags)
//   overlay · fuse-overlayfs · btrfs · vfs · unionfs · aufs                          │
//                                                                                 LayerApply
//                                                   (into a directory or, by DriverImport, a driver)
// ```
//
// Errors are `LayersError`, naming the file and the entry. Everything mounted or half written is
// registered with `Cleanup` until it is undone, so the command line can release it on Ctrl-C.
