import Foundation
import Host
import OCI

/// The package cache (`CACHE/packages`, kept by `PackageProxy`): what `imgbench cache` sizes,
/// checks and prunes of it. The proxy touches a kept file each time it serves it, so its mtime
/// is its last use. A file is checked or removed under its own lock (`FILE.lock`), the one the
/// proxy fetches it under, so never while a build fetches it; a build sending it keeps reading
/// the removed file.
extension CacheInventory {
    var packagesFolder: String { "\(root)/packages" }

    /// The kept files, the partial downloads and the lock files, each sorted.
    func packageFiles() -> (kept: [String], partials: [String], locks: [String]) {
        var kept: [String] = [], partials: [String] = [], locks: [String] = []
        func walk(_ dir: String) {
            for name in children(dir) {
                let p = "\(dir)/\(name)"
                guard let st = (try? FileSystem.lstatIfExists(p)) ?? nil else { continue }
                if st.isDirectory {
                    walk(p)
                } else if name.hasSuffix(".partial") {
                    partials.append(p)
                } else if name.hasSuffix(".lock") {
                    locks.append(p)
                } else if (st.st_mode & S_IFMT) == S_IFREG {
                    kept.append(p)
                }
            }
        }
        walk(packagesFolder)
        return (kept.sorted(), partials.sorted(), locks.sorted())
    }

    /// Files kept and bytes allocated (with what builds are fetching now).
    func packageUsage() -> (files: Int, bytes: UInt64) {
        (packageFiles().kept.count, FileSystem.exists(packagesFolder) ? bytes(packagesFolder) : 0)
    }

    /// What is wrong with a kept file: a by-hash index whose bytes are not the SHA-256 its name
    /// says (the proxy never keeps one, so it changed since). A package's name holds no hash
    /// (apt checks it against the signed index), so only its presence is known.
    func packageProblem(_ path: String) -> String? {
        let parts = path.split(separator: "/")
        guard parts.count >= 3, parts[parts.count - 3] == "by-hash", parts[parts.count - 2] == "SHA256" else { return nil }
        guard let (actual, _) = try? Digest.ofFile(path) else { return "it cannot be read" }
        return actual.hex == parts[parts.count - 1].lowercased() ? nil : "its bytes are \(actual), not the hash its name says"
    }

    /// Checks the kept indexes and finds what killed builds left (partial downloads, and lock
    /// files no one holds, which are removed silently); with `repair`, removes what is bad or left.
    func packageFindings(repair: Bool) -> (checked: Int, findings: [Finding]) {
        let (kept, partials, locks) = packageFiles()
        var findings: [Finding] = []
        for p in kept where packageProblem(p) != nil {
            guard let lock = FileLock(trying: p + ".lock", mode: .exclusive) else { continue }
            if let why = packageProblem(p) {
                findings.append(Finding(name: relative(p), problem: why, removed: repair && unlink(p) == 0))
            }
            release(lock)
        }
        for p in partials {
            guard let lock = FileLock(trying: String(p.dropLast(".partial".count)) + ".lock", mode: .exclusive) else { continue }
            findings.append(Finding(name: relative(p), problem: "a download left by a build that did not finish", removed: repair && unlink(p) == 0))
            release(lock)
        }
        if repair {
            for l in locks { if let held = FileLock(trying: l, mode: .exclusive) { release(held) } }
        }
        return (kept.count, findings)
    }

    /// Removes the kept files not served since `cutoff` (and any served meanwhile are kept),
    /// what killed builds left, and the folders left empty.
    func prunePackages(before cutoff: Date) -> [Finding] {
        var removed: [Finding] = []
        for p in packageFiles().kept {
            guard let st = (try? FileSystem.lstatIfExists(p)) ?? nil, lastServed(st) < cutoff,
                  let lock = FileLock(trying: p + ".lock", mode: .exclusive) else { continue }
            if let now = (try? FileSystem.lstatIfExists(p)) ?? nil, lastServed(now) < cutoff, unlink(p) == 0 {
                removed.append(Finding(name: relative(p), problem: "not served since \(ISO8601DateFormatter().string(from: lastServed(now)))", removed: true))
            }
            release(lock)
        }
        removed += packageFindings(repair: true).findings.filter(\.removed)
        removeEmptyFolders(under: packagesFolder)
        return removed
    }

    func lastServed(_ st: stat) -> Date { Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec)) }

    func relative(_ path: String) -> String { String(path.dropFirst(root.count + 1)) }

    /// Unlinks a package file's lock file while it is held, then lets it go (the order the
    /// proxy keeps: never two holders of one name).
    func release(_ lock: FileLock) {
        unlink(lock.path)
        lock.unlock()
    }

    /// Removes the empty folders under `dir` (not `dir`); a folder a build is filling this
    /// moment is not empty, and one it makes again with its parents is made whole.
    func removeEmptyFolders(under dir: String) {
        for name in children(dir) where isFolder("\(dir)/\(name)") {
            removeEmptyFolders(under: "\(dir)/\(name)")
            rmdir("\(dir)/\(name)")
        }
    }
}
