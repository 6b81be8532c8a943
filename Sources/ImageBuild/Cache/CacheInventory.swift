import Foundation
import Host
import Layers
import OCI

/// One entry of the build cache (`BuildCache`): a base root, a container layer (its record and
/// the driver layers of that key) or a VM link (with its record and boot files).
public struct CacheEntry: Sendable {
    public enum Kind: String, CaseIterable, Sendable, Codable {
        case base
        case layer
        case vmLink = "vm-link"
    }

    public var kind: Kind
    /// Its path relative to the cache, without extension (`bases/NAME`, `containers/layers/KEY`,
    /// `vm/SETTINGS/KEY`).
    public var name: String
    /// Its files and folders, absolute.
    public var files: [String]
    /// The entry it is made on (a layer's parent, a link's backing link), by name.
    public var parent: String?
    public var lastUse: Date
    /// The recipes that used it.
    public var recipes: [String]
    let lock: String
}

/// What the cache holds, checked and pruned while builds may run (`imgbench cache`): an entry is
/// checked or removed only under its exclusive lock, so never while a build makes or uses it.
public struct CacheInventory {
    public let root: String

    public init(root: String) { self.root = root }

    var blobs: BlobStore { BlobStore(root: "\(root)/containers") }
    var blobsLock: String { "\(root)/containers/blobs.lock" }

    /// Every entry, by kind and name.
    public func entries() -> [CacheEntry] {
        (bases() + layers() + links()).sorted { ($0.kind.rawValue, $0.name) < ($1.kind.rawValue, $1.name) }
    }

    func bases() -> [CacheEntry] {
        let dir = "\(root)/bases"
        // A base may be a symbolic link to a folder (another cache's base): removing it removes the link.
        return children(dir).filter { $0 != "scratch" && (FileManager.default.fileExists(atPath: "\(dir)/\($0)/root") || isFolder("\(dir)/\($0)")) }.map {
            entry(.base, "bases/\($0)", files: ["\(dir)/\($0)"], lock: "\(dir)/\($0).lock", parent: nil)
        }
    }

    /// The drivers that have a store here.
    var drivers: [String] {
        children("\(root)/containers").filter { StorageDrivers.names.contains($0) && isFolder("\(root)/containers/\($0)/layers") }
    }

    func layers() -> [CacheEntry] {
        let records = "\(root)/containers/layers"
        var keys = Set(children(records).filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) })
        for d in drivers { keys.formUnion(children("\(root)/containers/\(d)/layers")) }
        return keys.map { key in
            let dirs = drivers.map { "\(root)/containers/\($0)/layers/\(key)" }.filter(FileSystem.exists)
            let parent = dirs.lazy.compactMap { try? String(contentsOfFile: "\($0)/parent", encoding: .utf8) }.first
            return entry(.layer, "containers/layers/\(key)", files: ["\(records)/\(key).json"].filter(FileSystem.exists) + dirs,
                         lock: "\(records)/\(key).lock", parent: parent.map { "containers/layers/\($0.trimmingCharacters(in: .whitespacesAndNewlines))" })
        }
    }

    func links() -> [CacheEntry] {
        children("\(root)/vm").flatMap { settings -> [CacheEntry] in
            let dir = "\(root)/vm/\(settings)"
            let names = children(dir)
            let keys = Set(names.filter { $0.hasSuffix(".qcow2") || $0.hasSuffix(".json") }.map { ($0 as NSString).deletingPathExtension })
            return keys.map { key in
                let record = (try? Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(key).json"))).flatMap { try? JSONDecoder().decode(VMPass.LinkRecord.self, from: $0) }
                let files = ["\(dir)/\(key).qcow2", "\(dir)/\(key).json", "\(dir)/\(key).boot"].filter(FileSystem.exists)
                return entry(.vmLink, "vm/\(settings)/\(key)", files: files, lock: "\(dir)/\(key).lock",
                             parent: record?.parent.map { "vm/\(settings)/\(($0 as NSString).deletingPathExtension)" })
            }
        }
    }

    func entry(_ kind: CacheEntry.Kind, _ name: String, files: [String], lock: String, parent: String?) -> CacheEntry {
        let times = ([lock] + files).compactMap { try? FileSystem.lstatIfExists($0) }.map { Date(timeIntervalSince1970: TimeInterval($0.st_mtim.tv_sec)) }
        let used = (try? FileSystem.lstatIfExists(lock)).flatMap { $0 }.map { Date(timeIntervalSince1970: TimeInterval($0.st_mtim.tv_sec)) }
        return CacheEntry(kind: kind, name: name, files: files, parent: parent, lastUse: used ?? times.max() ?? .distantPast,
                          recipes: BuildCache.users(of: lock), lock: lock)
    }

    /// What is wrong with an entry (nil: it is usable), as a build would see it.
    public func problem(_ e: CacheEntry) -> String? {
        switch e.kind {
        case .base where e.name.hasPrefix("bases/registry-"):
            return Builder.hasTaggedLayout("\(root)/\(e.name)/layout") ? nil : "no complete image (a pull being made, or left by a build that did not finish)"
        case .base:
            return isFolder("\(root)/\(e.name)/root") ? nil : "no complete root (a base being made, or left by a build that did not finish)"
        case .layer:
            return layerProblem(e)
        case .vmLink:
            let folder = ("\(root)/\(e.name)" as NSString).deletingLastPathComponent
            if case let .bad(why) = VMPass.checkLink(in: folder, key: (e.name as NSString).lastPathComponent, parent: nil) { return why }
            return FileSystem.exists("\(root)/\(e.name).qcow2") ? nil : "a record without its link"
        }
    }

    func layerProblem(_ e: CacheEntry) -> String? {
        let key = (e.name as NSString).lastPathComponent
        guard let data = FileManager.default.contents(atPath: "\(root)/\(e.name).json") else {
            return "a driver layer without its record, left by a build that did not finish"
        }
        guard let l = try? JSONDecoder().decode(StoredLayer.self, from: data) else { return "its record does not decode" }
        let dirs = e.files.filter { !$0.hasSuffix(".json") }
        guard !dirs.isEmpty else { return "a record without a driver layer" }
        if let p = e.parent, !drivers.contains(where: { FileSystem.exists("\(root)/containers/\($0)/layers/\((p as NSString).lastPathComponent)") }) {
            return "its parent layer \((p as NSString).lastPathComponent.prefix(12)) is missing"
        }
        do { try blobs.verify(l.descriptor) } catch { return "layer \(key.prefix(12)): \(error)" }
        return nil
    }

    func children(_ dir: String) -> [String] { (try? FileSystem.children(dir)) ?? [] }

    func isFolder(_ path: String) -> Bool { (try? FileSystem.lstatIfExists(path))??.isDirectory ?? false }
}
