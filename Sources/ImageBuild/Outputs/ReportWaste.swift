import Foundation
import Layers
import OCI

extension BuildReport {
    /// Fills in the container side's wasted bytes from the image `tag` of the layout at `path`
    /// (hidden by a later layer, and package caches left; `WastedBytes.Layer.wastedBytes`):
    /// per layer (`WastedBytes.perLayer`), the base's layers summed into the base phase, then one
    /// layer per step that has a container measure, in order; and the image's sum in the totals.
    /// Layer listings are kept in `listings` by digest, so that a rebuild from the cache does not
    /// read its layers again.
    mutating func addLayerWaste(layout path: String, tag: String, listings: String) throws {
        let layout = try ImageLayout(opening: path)
        let image = try layout.image(tag: tag)
        let perLayer = try WastedBytes.perLayer(image.manifest.layers.map {
            try LayerListingCache.entries(of: layout.blobs.path(of: $0.digest), digest: $0.digest, cache: listings)
        })
        func waste(_ layers: some Collection<WastedBytes.Layer>) -> Waste {
            Waste(overwrittenLaterBytes: UInt64(max(0, layers.reduce(0) { $0 + $1.hiddenBytes })),
                  cachesLeftBytes: UInt64(max(0, layers.reduce(0) { $0 + $1.cacheBytes })))
        }
        let stepIndices = steps.indices.filter { steps[$0].container != nil }
        let baseLayers = perLayer.count - stepIndices.count
        guard baseLayers >= 0 else {
            throw BuildError.invalid("\(path): the image has \(perLayer.count) layers for \(stepIndices.count) steps that changed files")
        }
        base.container?.wasted = waste(perLayer.prefix(baseLayers))
        for (i, w) in zip(stepIndices, perLayer.dropFirst(baseLayers)) {
            steps[i].container?.wasted = waste([w])
        }
        totals.wasted = waste(perLayer)
    }
}

/// What wasted bytes need of a layer's listing (path, whether a regular file, whiteout or opaque
/// marker, size), stored as `CACHE/DIGEST.json`. A file that cannot be read is made again.
enum LayerListingCache {
    struct Listing: Codable {
        /// 0: other, 1: regular file, 2: whiteout, 3: opaque directory.
        var kinds: [UInt8]
        var paths: [String]
        var sizes: [Int64]
    }

    static func entries(of blob: String, digest: Digest, cache: String) throws -> [LayerEntry] {
        let file = "\(cache)/\(digest.hex).json"
        if let data = FileManager.default.contents(atPath: file), let l = try? JSONDecoder().decode(Listing.self, from: data),
           l.kinds.count == l.paths.count, l.sizes.count == l.paths.count {
            return l.paths.indices.map { i in
                let kind: LayerEntry.Kind = [1: .regular, 2: .whiteout, 3: .opaque][l.kinds[i]] ?? .directory
                return LayerEntry(path: l.paths[i], kind: kind, size: l.sizes[i])
            }
        }
        let entries = try LayerReader.list(blob).entries
        store(entries, digest: digest, cache: cache)
        return entries
    }

    /// Keeps a layer's listing read elsewhere (while the layer was applied), so that the report
    /// does not read the layer again.
    static func store(_ entries: [LayerEntry], digest: Digest, cache: String) {
        let file = "\(cache)/\(digest.hex).json"
        let listing = Listing(kinds: entries.map { e in
            switch e.kind {
            case .regular: return 1
            case .whiteout: return 2
            case .opaque: return 3
            default: return 0
            }
        }, paths: entries.map(\.path), sizes: entries.map(\.size))
        // Written beside and renamed, so that a reader never sees half a file; a cache that
        // cannot be written only costs the next build a read of the layer.
        if (try? FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)) != nil,
           let data = try? JSONEncoder().encode(listing) {
            let tmp = "\(file).partial-\(getpid())"
            if FileManager.default.createFile(atPath: tmp, contents: data), rename(tmp, file) != 0 { unlink(tmp) }
        }
    }

    /// Where a cache keeps the listings.
    static func folder(cache root: String) -> String { "\(root)/containers/listings" }
}
