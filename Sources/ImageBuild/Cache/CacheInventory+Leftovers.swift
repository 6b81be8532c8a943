import Foundation
import Host
import OCI

/// What no entry owns: the `.partial` files of makers that died, the scratch folders of dead VM
/// passes, blobs whose bytes are not their digest, blobs no record refers to.
extension CacheInventory {
    /// The `.partial` files and folders whose entry's lock is free, and the dead scratch folders;
    /// with `remove`, removed (under that lock).
    func leftovers(remove: Bool) -> [Finding] {
        var found: [Finding] = []
        for (partial, lock) in partials() {
            guard let l = FileLock(trying: lock, mode: .exclusive) else { continue }
            let removed = remove && (try? FileSystem.removeTree(partial)) != nil
            l.unlock()
            found.append(Finding(name: String(partial.dropFirst(root.count + 1)), problem: "left by a build that did not finish", removed: removed))
        }
        let tmp = "\(root)/tmp"
        if remove {
            found += ScratchFolders.sweep(tmp).map { Finding(name: "tmp/\($0)", problem: "the scratch of a build that was killed", removed: true) }
        } else {
            for name in children(tmp) where name.hasPrefix("vm-") && !name.hasSuffix(".lock") {
                if FileLock(trying: "\(tmp)/\(name).lock", mode: .exclusive) != nil {
                    found.append(Finding(name: "tmp/\(name)", problem: "the scratch of a build that was killed", removed: false))
                }
            }
        }
        return found + blobTemporaries(remove: remove)
    }

    /// Each `.partial`, and each `.fetch` folder of a registry entry being fetched
    /// (`RemoteCache`), with the lock of the entry it was to become.
    func partials() -> [(String, String)] {
        var out: [(String, String)] = []
        for name in children("\(root)/bases") where isFolder("\(root)/bases/\(name)") {
            for p in children("\(root)/bases/\(name)") where p.hasPrefix("root.partial") {
                out.append(("\(root)/bases/\(name)/\(p)", "\(root)/bases/\(name).lock"))
            }
        }
        let records = "\(root)/containers/layers"
        for p in children(records) where p.hasSuffix(".json.partial") || p.hasSuffix(".fetch") {
            out.append(("\(records)/\(p)", "\(records)/\(p.prefix { $0 != "." }).lock"))
        }
        for settings in children("\(root)/vm") {
            let dir = "\(root)/vm/\(settings)"
            for p in children(dir) where p.contains(".partial") || p.hasSuffix(".fetch") {
                out.append(("\(dir)/\(p)", "\(dir)/\(p.prefix { $0 != "." }).lock"))
            }
        }
        return out
    }

    /// Blob temporaries of captures that died: only when no build writes blobs (the blob lock free).
    func blobTemporaries(remove: Bool) -> [Finding] {
        guard let lock = FileLock(trying: blobsLock, mode: .exclusive) else { return [] }
        defer { lock.unlock() }
        return children(blobs.directory).filter { $0.hasPrefix(".tmp-") }.map { name in
            let removed = remove && unlink("\(blobs.directory)/\(name)") == 0
            return Finding(name: "containers/blobs/sha256/\(name)", problem: "a blob being written by a build that did not finish", removed: removed)
        }
    }

    /// Blobs whose bytes are not their digest; with `repair`, removed (the layers recorded with
    /// them are then bad too, and made again by the next build).
    func badBlobs(repair: Bool) -> [Finding] {
        ((try? blobs.list()) ?? []).compactMap { digest in
            let p = blobs.path(of: digest)
            guard let (actual, _) = try? Digest.ofFile(p), actual != digest else { return nil }
            let removed = repair && unlink(p) == 0
            return Finding(name: "containers/blobs/sha256/\(digest.hex)", problem: "its bytes are \(actual)", removed: removed)
        }
    }

    /// Removes the blobs no layer record refers to, while no build writes blobs.
    func unreferencedBlobs() -> [Finding] {
        guard let lock = FileLock(trying: blobsLock, mode: .exclusive) else { return [] }
        defer { lock.unlock() }
        let used = Set(layers().compactMap { layerRecord($0)?.descriptor.digest })
        return ((try? blobs.list()) ?? []).filter { !used.contains($0) }.compactMap { digest in
            guard unlink(blobs.path(of: digest)) == 0 else { return nil }
            return Finding(name: "containers/blobs/sha256/\(digest.hex)", problem: "no layer refers to it", removed: true)
        }
    }
}
