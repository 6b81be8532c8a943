import Foundation
import Host
import Layers
import OCI

/// The container side's entries in a registry (`RemoteCache`): a step's layer blob and record.
extension ContainerPass {
    static func remoteTag(_ key: String) -> String { "layer-\(key)" }

    /// The layer of step `key` from the registry, unpacked into the driver on `parent` and
    /// recorded, as if built here; nil when the registry has none, or one whose blob is not
    /// what its record says.
    /// Its record keeps when and at what cost the layer was made where it was built, so that this
    /// machine's image has the builder's `created` times.
    func fetchLayer(_ key: String, parent: String?) throws -> LayerRecord? {
        let fetched = try remote?.fetch(Self.remoteTag(key), into: "\(records)/\(key).fetch") { dir, _ -> LayerRecord? in
            let record = try JSONDecoder().decode(LayerRecord.self, from: try Data(contentsOf: URL(fileURLWithPath: "\(dir)/record.json")))
            let layer = record.layer
            let (digest, _) = try Digest.ofFile("\(dir)/layer")
            guard digest == layer.descriptor.digest else {
                // A bad entry in a shared cache must not stop every build that reads it: built here instead.
                events.warning("--cache-from: the registry's layer-\(key.prefix(12)) holds \(digest), its record says \(layer.descriptor.digest); the step is built here")
                return nil
            }
            if !blobs.contains(digest) { try FileSystem.rename("\(dir)/layer", to: blobs.path(of: digest)) }
            try inNewLayer(key, parent: parent) { root in
                // The listing the report's wasted bytes need, read on the way: this machine never
                // reads the layer for it again.
                let applied = try LayerApply.apply(layer: blobs.path(of: digest), to: root, expecting: digest, listing: true)
                LayerListingCache.store(applied.listing ?? [], digest: digest, cache: LayerListingCache.folder(cache: cache.root))
            }
            events.note("cache: layer \(key.prefix(12)) from the registry")
            return record
        }
        return fetched ?? nil
    }

    /// Stores step `key`'s layer in the registry (`--cache-to`).
    func storeLayer(_ key: String, _ record: LayerRecord) throws {
        guard let remote, remote.settings.to != nil else { return }
        let blob = record.layer.descriptor.digest
        try remote.store(Self.remoteTag(key), files: ["layer": blobs.path(of: blob), "record.json": "\(records)/\(key).json"],
                         digests: ["layer": blob])
    }
}
