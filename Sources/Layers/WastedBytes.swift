import Foundation

/// Bytes that a layer carries but a later layer of the same image deletes (by a whiteout or an
/// opaque directory) or replaces with an entry of the same path: they are pulled and stored and
/// never seen in a container.
public enum WastedBytes {
    /// Per layer, bottom first, from the layers' listings.
    public static func perLayer(_ listings: [[LayerEntry]]) -> [Int64] {
        var wasted = [Int64](repeating: 0, count: listings.count)
        // Live regular files: path -> (layer, size).
        var live: [String: (Int, Int64)] = [:]
        func drop(where matches: (String) -> Bool) {
            for (p, v) in live where matches(p) {
                wasted[v.0] += v.1
                live.removeValue(forKey: p)
            }
        }
        for (i, entries) in listings.enumerated() {
            for e in entries {
                switch e.kind {
                case .whiteout:
                    let prefix = e.path + "/"
                    drop { $0 == e.path || $0.hasPrefix(prefix) }
                case .opaque:
                    let prefix = e.path.isEmpty ? "" : e.path + "/"
                    // What this layer itself put there (earlier in its listing) stays.
                    drop { $0.hasPrefix(prefix) && live[$0]?.0 != i }
                default:
                    if let old = live[e.path], old.0 != i {
                        wasted[old.0] += old.1
                        live.removeValue(forKey: e.path)
                    }
                    if case .regular = e.kind { live[e.path] = (i, e.size) }
                }
            }
        }
        return wasted
    }

    /// Per layer of an image in a layout.
    public static func perLayer(of image: ImageLayout.Image, in layout: ImageLayout) throws -> [Int64] {
        try perLayer(image.manifest.layers.map { try LayerReader.list(layout.blobs.path(of: $0.digest)).entries })
    }
}
