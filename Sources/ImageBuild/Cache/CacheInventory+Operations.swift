import Foundation
import Host
import Layers
import OCI

/// `imgbench cache du|verify|prune`: sizes, checks and removals, each removal under the entry's
/// exclusive lock taken without waiting (an entry a build makes or uses is left alone).
extension CacheInventory {
    /// Bytes per kind and per recipe.
    public struct Usage: Codable, Sendable {
        public struct Row: Codable, Sendable {
            public var name: String
            public var entries: Int
            public var bytes: UInt64
        }

        public var kinds: [Row]
        public var recipes: [Row]
        public var totalBytes: UInt64
    }

    /// A bad entry or a leftover, and whether it was removed.
    public struct Finding: Codable, Sendable {
        public var name: String
        public var problem: String
        public var removed: Bool
    }

    public func usage() -> Usage {
        var kinds: [String: Usage.Row] = [:]
        var recipes: [String: Usage.Row] = [:]
        func add(_ kind: String, _ bytes: UInt64, entries: Int = 1) {
            kinds[kind, default: Usage.Row(name: kind, entries: 0, bytes: 0)].entries += entries
            kinds[kind]!.bytes += bytes
        }
        let blobBytes = Dictionary(uniqueKeysWithValues: ((try? blobs.list()) ?? []).map { ($0, bytes(blobs.path(of: $0))) })
        add("blobs", blobBytes.values.reduce(0, +), entries: blobBytes.count)
        let packages = packageUsage()
        if packages.files > 0 { add("packages", packages.bytes, entries: packages.files) }
        for e in entries() {
            let boot = e.files.filter { $0.hasSuffix(".boot") }.map(bytes).reduce(0, +)
            let own = e.files.map(bytes).reduce(0, +) - boot
            add(["base": "bases", "layer": "container layers", "vm-link": "vm links"][e.kind.rawValue]!, own)
            if boot > 0 { add("boot files", boot) }
            let blob = layerRecord(e).map { blobBytes[$0.descriptor.digest] ?? 0 } ?? 0
            for r in e.recipes.isEmpty ? ["(unknown)"] : e.recipes {
                recipes[r, default: Usage.Row(name: r, entries: 0, bytes: 0)].entries += 1
                recipes[r]!.bytes += own + boot + blob
            }
        }
        return Usage(kinds: kinds.values.sorted { $0.name < $1.name }, recipes: recipes.values.sorted { $0.name < $1.name },
                     totalBytes: bytes(root))
    }

    /// Checks every entry and every blob's digest; with `repair`, removes what is bad and what
    /// dead builds left. An entry a build holds is skipped: a build only holds usable entries or
    /// ones it is making.
    /// Removing a bad entry makes the entries made on it bad (their parent is missing), so a
    /// repair checks again until a pass removes nothing.
    public func verify(repair: Bool) -> (checked: Int, findings: [Finding]) {
        let all = entries()
        var findings: [Finding] = []
        var seen = Set<String>()
        var pass = all
        while !pass.isEmpty {
            var removedAny = false
            for e in pass where !seen.contains(e.name) {
                guard problem(e) != nil, let lock = FileLock(trying: e.lock, mode: .exclusive), let why = problem(e) else { continue }
                let removed = repair && (try? remove(e, holding: lock)) != nil
                seen.insert(e.name)
                removedAny = removedAny || removed
                findings.append(Finding(name: e.name, problem: why, removed: removed))
            }
            pass = removedAny ? entries() : []
        }
        let packages = packageFindings(repair: repair)
        findings += badBlobs(repair: repair) + leftovers(remove: repair) + packages.findings
        return (all.count + ((try? blobs.list()) ?? []).count + packages.checked, findings)
    }

    /// Removes the entries not used for `keepDays` days (and none that an entry kept is made
    /// on), what dead builds left, blobs no record refers to, and the package cache's files not
    /// served for as long; returns what it removed.
    public func prune(keepDays: Int, now: Date = Date()) -> [Finding] {
        let cutoff = now.addingTimeInterval(-Double(keepDays) * 86_400)
        let all = entries()
        var old = Set(all.filter { $0.lastUse < cutoff }.map(\.name))
        var changed = true
        while changed {
            let needed = Set(all.filter { !old.contains($0.name) }.compactMap(\.parent))
            changed = !old.isDisjoint(with: needed)
            old.subtract(needed)
        }
        var removed: [Finding] = []
        for e in all where old.contains(e.name) {
            guard let lock = FileLock(trying: e.lock, mode: .exclusive), lastUse(of: e.lock) < cutoff else { continue }
            if (try? remove(e, holding: lock)) != nil {
                removed.append(Finding(name: e.name, problem: "not used since \(ISO8601DateFormatter().string(from: e.lastUse))", removed: true))
            }
        }
        return removed + leftovers(remove: true) + unreferencedBlobs() + prunePackages(before: cutoff)
    }

    /// Removes an entry's files, then its lock file, while its lock is held.
    func remove(_ e: CacheEntry, holding lock: FileLock) throws {
        for f in e.files {
            let parts = f.dropFirst(root.count + 1).split(separator: "/").map(String.init)
            if e.kind == .layer, parts.count == 4, parts[0] == "containers", drivers.contains(parts[1]) {
                let driver = try StorageDrivers.open(parts[1], store: "\(root)/containers")
                defer { try? driver.close() }
                try driver.remove(parts[3])
            } else {
                try FileSystem.removeTree(f)
            }
        }
        unlink(lock.path)
        lock.unlock()
    }

    func lastUse(of lock: String) -> Date {
        guard let st = (try? FileSystem.lstatIfExists(lock)) ?? nil else { return .distantPast }
        return Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec))
    }

    func layerRecord(_ e: CacheEntry) -> StoredLayer? {
        guard e.kind == .layer, let d = FileManager.default.contents(atPath: "\(root)/\(e.name).json") else { return nil }
        return try? JSONDecoder().decode(StoredLayer.self, from: d)
    }

    func bytes(_ path: String) -> UInt64 { (try? FileSystem.allocatedBytes(path)) ?? 0 }
}
