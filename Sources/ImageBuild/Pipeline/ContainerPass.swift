import Foundation
import Host
import Layers
import OCI
import QcowIO

/// The container side of a build: each step that changes files runs in a writable root from a
/// storage driver, stacked on the previous step's layer; what it changed becomes one OCI layer.
/// Metadata steps change only the image config (`empty_layer` history entries).
///
/// Cache layout: `CACHE/containers/DRIVER/` is the driver's store, whose layers are named by step
/// key; `CACHE/containers/blobs/` holds the layer blobs; `CACHE/containers/layers/KEY.json` the
/// stored layer of a step. A layer's record is written only after its blob and driver layer are
/// complete, so the cache survives a failed or interrupted build.
final class ContainerPass {
    let driver: StorageDriver
    let blobs: BlobStore
    let records: String
    let noCache: Bool
    let events: BuildEvents
    let sourceDateEpoch: Int64?
    private(set) var top: String?
    private(set) var layers: [StoredLayer] = []
    private(set) var history: [History] = []
    /// Where the runtime bundle's rootfs is unpacked while the build goes on (nil: no bundle).
    var bundle: BundleStager?

    init(driver name: String, cache: String, noCache: Bool, sourceDateEpoch: Int?, events: BuildEvents) throws {
        driver = try StorageDrivers.open(name, store: "\(cache)/containers")
        blobs = BlobStore(root: "\(cache)/containers")
        records = "\(cache)/containers/layers"
        try FileManager.default.createDirectory(atPath: blobs.directory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: records, withIntermediateDirectories: true)
        self.noCache = noCache
        self.events = events
        self.sourceDateEpoch = sourceDateEpoch.map(Int64.init)
    }

    var captureOptions: CaptureOptions {
        CaptureOptions(compression: .gzip, sourceDateEpoch: sourceDateEpoch ?? CaptureOptions.environmentEpoch)
    }

    func record(_ key: String) -> StoredLayer? {
        guard !noCache, driver.hasLayer(key), let d = FileManager.default.contents(atPath: "\(records)/\(key).json"),
              let l = try? JSONDecoder().decode(StoredLayer.self, from: d), blobs.contains(l.descriptor.digest) else { return nil }
        return l
    }

    func save(_ l: StoredLayer, key: String) throws {
        let tmp = "\(records)/\(key).json.partial"
        try JSONEncoder().encode(l).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, "\(records)/\(key).json") == 0 else { throw HostError.io(path: tmp, message: String(cString: strerror(errno))) }
    }

    /// Forgets a layer the driver holds for `key` (a rebuild with --no-cache, or a leftover of an
    /// interrupted step).
    func discard(_ key: String) {
        unlink("\(records)/\(key).json")
        if driver.hasLayer(key) { try? driver.remove(key) }
    }

    /// The base: the root folder captured as the first layer and unpacked into the driver.
    func base(key: String, root: String, description: String) throws -> BuildReport.Measure {
        let start = Date()
        let (layer, hit) = try cachedLayer(key) {
            events.note("container: capturing the base root as the first layer")
            let layer = try capture("the base") { try LayerCapture.capture(.tree(root), into: blobs, options: captureOptions, tee: $0).layer }
            try inNewLayer(key, parent: nil) { writable in
                _ = try LayerApply.apply(layer: blobs.path(of: layer.descriptor.digest), to: writable, expecting: layer.descriptor.digest)
            }
            return layer
        }
        top = key
        layers = [layer]
        history = [History(created: created, createdBy: "imgbench: base \(description)", emptyLayer: nil)]
        return measure(layer, seconds: Date().timeIntervalSince(start), hit: hit)
    }

    /// The base from an OCI image: its layers, unpacked into the driver by chain ID, become the
    /// first layers; its history is kept.
    func base(image: ImageLayout.Image, layout: ImageLayout) throws -> BuildReport.Measure {
        let start = Date()
        for d in image.manifest.layers where !blobs.contains(d.digest) {
            let src = layout.blobs.path(of: d.digest), dst = blobs.path(of: d.digest)
            if link(src, dst) != 0 { try FileManager.default.copyItem(atPath: src, toPath: dst) }
        }
        let before = DriverImport.chainIDs(image.config.rootfs.diffIDs).map(\.hex)
        let hit = !noCache && before.allSatisfy { driver.hasLayer($0) }
        let ids = try DriverImport.importImage(image, from: layout, into: driver)
        for d in image.manifest.layers { bundle?.add(blob: blobs.path(of: d.digest)) }
        if !hit { bundle?.start() }
        top = ids.last
        layers = zip(image.manifest.layers, image.config.rootfs.diffIDs).map { d, diff in
            StoredLayer(descriptor: d, diffID: diff, uncompressedSize: 0)
        }
        history = image.config.history ?? layers.map { _ in History(createdBy: "imgbench: base layer") }
        var m = BuildReport.Measure(seconds: Date().timeIntervalSince(start), cacheHit: hit)
        m.layerCompressedBytes = image.manifest.layers.totalSize
        return m
    }

    var created: String? {
        let epoch = sourceDateEpoch ?? CaptureOptions.environmentEpoch
        return ISO8601DateFormatter().string(from: epoch.map { Date(timeIntervalSince1970: TimeInterval($0)) } ?? Date())
    }

    /// A metadata step: only a history entry.
    func metadata(_ text: String) {
        history.append(History(created: created, createdBy: text, emptyLayer: true))
    }

    /// A step that changes files: prepared on the current top, `work` run in the writable root,
    /// the diff captured.
    func step(key: String, text: String, _ work: (_ root: String) throws -> Void) throws -> BuildReport.Measure {
        let start = Date()
        let (layer, hit) = try cachedLayer(key) {
            // The bundle's layers so far are unpacked while this step runs.
            bundle?.start()
            return try inNewLayer(key, parent: top) { root in
                try work(root)
                return try capture(text) { try driver.capture(key, into: blobs, options: captureOptions, tee: $0).layer }
            }
        }
        top = key
        layers.append(layer)
        history.append(History(created: created, createdBy: text, emptyLayer: nil))
        return measure(layer, seconds: Date().timeIntervalSince(start), hit: hit)
    }

    /// The layer of step `key`: the cached one (a hit, its blob handed to the bundle), else the
    /// one `make` makes, after forgetting any leftover of `key`, recorded once it is complete.
    func cachedLayer(_ key: String, make: () throws -> StoredLayer) throws -> (layer: StoredLayer, hit: Bool) {
        if let l = record(key) {
            bundle?.add(blob: blobs.path(of: l.descriptor.digest))
            return (l, true)
        }
        discard(key)
        let layer = try make()
        try save(layer, key: key)
        return (layer, false)
    }

    /// Runs `body` in the writable root of a new driver layer `key` on `parent`; the layer is
    /// released when `body` succeeds and removed when it fails.
    func inNewLayer<T>(_ key: String, parent: String?, _ body: (_ root: String) throws -> T) throws -> T {
        do {
            let root = try driver.prepare(key, parent: parent)
            let result = try body(root)
            try driver.release(key)
            return result
        } catch {
            try? driver.remove(key)
            throw error
        }
    }

    /// Runs a capture, handing it the bundle's tee when there is a bundle.
    func capture(_ name: String, _ body: (ByteSink?) throws -> StoredLayer) throws -> StoredLayer {
        guard let bundle else { return try body(nil) }
        return try bundle.capturing(name) { try body($0) }
    }

    func measure(_ l: StoredLayer, seconds: Double, hit: Bool) -> BuildReport.Measure {
        var m = BuildReport.Measure(seconds: seconds, cacheHit: hit)
        m.layerCompressedBytes = UInt64(l.descriptor.size)
        m.layerUncompressedBytes = UInt64(l.uncompressedSize)
        m.layerDigest = l.descriptor.digest.description
        return m
    }

    /// Writes the OCI layout (blobs linked from the cache) tagged `tag`, and returns the
    /// manifest's digest.
    func export(layout path: String, tag: String, config: ContainerConfig) throws -> String {
        let layout = try ImageLayout.create(at: path)
        try FileManager.default.createDirectory(atPath: layout.blobs.directory, withIntermediateDirectories: true)
        for l in layers where !layout.blobs.contains(l.descriptor.digest) {
            let src = blobs.path(of: l.descriptor.digest), dst = layout.blobs.path(of: l.descriptor.digest)
            if link(src, dst) != 0 { try FileManager.default.copyItem(atPath: src, toPath: dst) }
        }
        let d = try layout.writeImage(layers: layers, config: config, history: history, created: created, tag: tag)
        return d.digest.description
    }

    func close() { try? driver.close() }
}
