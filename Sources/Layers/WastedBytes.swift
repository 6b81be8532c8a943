import Foundation
import OCI

/// Bytes that a layer carries but a later layer of the same image deletes (by a whiteout or an
/// opaque directory) or replaces with an entry of the same path: they are pulled and stored and
/// never seen in a container. Also, among the files that are seen, the package managers' caches
/// and lists that an image rarely needs at run time.
public enum WastedBytes {
    /// Per layer, bottom first, from the layers' listings: its file bytes, and of those, what is
    /// wasted and why (one definition everywhere: `Layer.wastedBytes`).
    public static func perLayer(_ listings: [[LayerEntry]]) -> [Layer] {
        analyze(listings).layers
    }

    /// Per layer of an image in a layout.
    public static func perLayer(of image: ImageLayout.Image, in layout: ImageLayout) throws -> [Layer] {
        try perLayer(image.manifest.layers.map { try LayerReader.list(layout.blobs.path(of: $0.digest)).entries })
    }

    /// Paths (relative to the root, as layer entries name them) of package caches and lists.
    public static let cachePrefixes = [
        "var/cache/apt/", "var/lib/apt/lists/", "var/cache/debconf/templates.dat-old", "var/cache/man/",
        "root/.npm/", "root/.cache/", "root/.cargo/registry/", "var/cache/pip/", "tmp/", "var/tmp/",
    ]

    static func isCache(_ path: String) -> Bool {
        cachePrefixes.contains { path.hasPrefix($0) } && !path.hasSuffix("/lock") && !path.hasSuffix(".lock")
    }

    public struct Layer: Codable, Equatable, Sendable {
        /// Regular file bytes the layer holds.
        public var fileBytes: Int64
        /// Of those, bytes a later layer deletes or replaces.
        public var hiddenBytes: Int64
        /// Of those still seen, bytes of package caches and lists (`cachePrefixes`).
        public var cacheBytes: Int64
        /// The layer's wasted bytes: hidden later plus caches left. `imgbench check`, `measure
        /// wasted`, `oci inspect` and `report` all mean this sum, and show its two parts.
        public var wastedBytes: Int64 { hiddenBytes + cacheBytes }
    }

    /// A file whose bytes are wasted, and why.
    public struct Offender: Codable, Equatable, Sendable {
        public var path: String
        /// The layer that carries the bytes (0 = bottom).
        public var layer: Int
        public var bytes: Int64
        /// "deleted by layer N", "replaced by layer N", or "package cache or list".
        public var reason: String
    }

    public struct Analysis: Codable, Equatable, Sendable {
        public var layers: [Layer]
        /// The largest offenders first.
        public var offenders: [Offender]
        public var totalFileBytes: Int64
        public var wastedBytes: Int64 { layers.reduce(0) { $0 + $1.wastedBytes } }
        /// The share of the image's file bytes that a container sees and needs: 1 minus hidden
        /// and cache bytes over all file bytes of all layers (1 for an image without waste).
        public var efficiency: Double { totalFileBytes == 0 ? 1 : 1 - Double(wastedBytes) / Double(totalFileBytes) }
    }

    /// Every layer's hidden and cache bytes, and the `top` largest offenders.
    public static func analyze(_ listings: [[LayerEntry]], top: Int = 20) -> Analysis {
        var layers = listings.map { entries in
            Layer(fileBytes: entries.reduce(0) { $0 + ($1.kind == .regular ? $1.size : 0) }, hiddenBytes: 0, cacheBytes: 0)
        }
        var offenders: [Offender] = []
        // Live regular files: path -> (layer, size).
        var live: [String: (Int, Int64)] = [:]
        func drop(by layer: Int, reason: String, where matches: (String) -> Bool) {
            for (p, v) in live where matches(p) {
                layers[v.0].hiddenBytes += v.1
                offenders.append(Offender(path: p, layer: v.0, bytes: v.1, reason: "\(reason) by layer \(layer)"))
                live.removeValue(forKey: p)
            }
        }
        for (i, entries) in listings.enumerated() {
            for e in entries {
                switch e.kind {
                case .whiteout:
                    let prefix = e.path + "/"
                    drop(by: i, reason: "deleted") { $0 == e.path || $0.hasPrefix(prefix) }
                case .opaque:
                    let prefix = e.path.isEmpty ? "" : e.path + "/"
                    // What this layer itself put there (earlier in its listing) stays.
                    drop(by: i, reason: "deleted") { $0.hasPrefix(prefix) && live[$0]?.0 != i }
                default:
                    if let old = live[e.path], old.0 != i {
                        layers[old.0].hiddenBytes += old.1
                        offenders.append(Offender(path: e.path, layer: old.0, bytes: old.1, reason: "replaced by layer \(i)"))
                        live.removeValue(forKey: e.path)
                    }
                    if case .regular = e.kind { live[e.path] = (i, e.size) }
                }
            }
        }
        for (p, v) in live where isCache(p) && v.1 > 0 {
            layers[v.0].cacheBytes += v.1
            offenders.append(Offender(path: p, layer: v.0, bytes: v.1, reason: "package cache or list"))
        }
        offenders.sort { $0.bytes != $1.bytes ? $0.bytes > $1.bytes : $0.path < $1.path }
        return Analysis(layers: layers, offenders: Array(offenders.prefix(top)),
                        totalFileBytes: layers.reduce(0) { $0 + $1.fileBytes })
    }

    /// The analysis of an image in a layout.
    public static func analyze(_ image: ImageLayout.Image, in layout: ImageLayout, top: Int = 20) throws -> Analysis {
        analyze(try image.manifest.layers.map { try LayerReader.list(layout.blobs.path(of: $0.digest)).entries }, top: top)
    }
}
