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
/// complete, so the cache survives a failed or interrupted build; a layer is made under the
/// exclusive lock `layers/KEY.lock` and used under it shared (`BuildCache`).
final class ContainerPass {
    let driver: StorageDriver
    let blobs: BlobStore
    let records: String
    let cache: BuildCache
    let noCache: Bool
    let events: BuildEvents
    let sourceDateEpoch: Int64?
    private(set) var top: String?
    private(set) var layers: [StoredLayer] = []
    private(set) var history: [History] = []
    /// Where the runtime bundle's rootfs is unpacked while the build goes on (nil: no bundle).
    var bundle: BundleStager?
    /// The registry that entries come from and go to (`--cache-from`, `--cache-to`).
    var remote: RemoteCache?

    init(driver name: String, cache: BuildCache, noCache: Bool, sourceDateEpoch: Int?, events: BuildEvents) throws {
        driver = try StorageDrivers.open(name, store: "\(cache.root)/containers")
        blobs = BlobStore(root: "\(cache.root)/containers")
        records = "\(cache.root)/containers/layers"
        self.cache = cache
        try FileManager.default.createDirectory(atPath: blobs.directory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: records, withIntermediateDirectories: true)
        // Blobs a killed build was writing (a capture runs beside the steps, so a kill often lands
        // in one): removed when no build writes blobs, as `cache verify --repair` does.
        _ = CacheInventory(root: cache.root).blobTemporaries(remove: true)
        self.noCache = noCache
        self.events = events
        self.sourceDateEpoch = sourceDateEpoch.map(Int64.init)
    }

    var captureOptions: CaptureOptions { Self.captureOptions(sourceDateEpoch: sourceDateEpoch) }

    /// How the container side captures its layers: gzip at its default level.
    static func captureOptions(sourceDateEpoch: Int64?) -> CaptureOptions {
        CaptureOptions(compression: .gzip, sourceDateEpoch: sourceDateEpoch ?? CaptureOptions.environmentEpoch)
    }

    /// Set when the other side of the build runs at the same time: the base layer's capture,
    /// which runs beside the steps, then compresses on its own thread alone, at a low priority,
    /// so that it takes no CPU time from either side's steps (the same blob: the compressed
    /// bytes do not depend on the thread count).
    var sharesMachine = false

    /// What the cache holds for `key`, and its record when that is usable. A record is read only
    /// with its driver layer (and the chain below it) and a blob whose digest and size match.
    func check(_ key: String) -> (BuildCache.Check, LayerRecord?) {
        guard let d = FileManager.default.contents(atPath: "\(records)/\(key).json") else {
            return (driver.hasLayer(key) ? .bad("a driver layer without its record, left by a build that did not finish") : .missing, nil)
        }
        guard let r = try? JSONDecoder().decode(LayerRecord.self, from: d) else { return (.bad("its record does not decode"), nil) }
        guard driver.hasLayer(key) else { return (.missing, nil) }
        do {
            _ = try driver.chain(key)
            try blobs.verify(r.layer.descriptor)
        } catch {
            return (.bad("\(error)"), nil)
        }
        return (.valid, r)
    }

    func save(_ l: LayerRecord, key: String) throws {
        let tmp = "\(records)/\(key).json.partial"
        try JSONEncoder().encode(l).write(to: URL(fileURLWithPath: tmp))
        try FileSystem.rename(tmp, to: "\(records)/\(key).json")
    }

    /// Forgets what the cache holds for `key` (a rebuild with --no-cache, a leftover of an
    /// interrupted step, a bad entry): its record, its driver layer, and its blob when that is
    /// corrupt (a new capture of the same bytes would keep the bad copy).
    func discard(_ key: String) {
        let record = "\(records)/\(key).json"
        if let d = FileManager.default.contents(atPath: record), let l = try? JSONDecoder().decode(StoredLayer.self, from: d),
           blobs.contains(l.descriptor.digest), (try? blobs.verify(l.descriptor)) == nil {
            unlink(blobs.path(of: l.descriptor.digest))
        }
        unlink(record)
        if driver.hasLayer(key) { try? driver.remove(key) }
    }

    var blobsLock: String { "\(blobs.root)/blobs.lock" }

    /// Starts the base: the root folder becomes the first layer. When the layer is made here, its
    /// driver layer is the root folder itself, by reference (`StorageDriver.referenceTree`: the
    /// lowest branch of the steps' overlays, nothing copied; a copy on vfs and btrfs), and this
    /// returns as soon as that is done: the capture and compression of the layer's blob go on on
    /// a thread of their own, beside the first steps, which run on the driver layer. A cached
    /// layer (here or in the registry of `--cache-from`) is ready when this returns. `root` is
    /// asked for when the layer is made, and when the cached driver layer stands on the root
    /// folder: the build then holds the root's cache entry, so that `imgbench cache prune` does
    /// not remove it from under the steps, and the layer's check sees whether it is still the
    /// folder the layer was made on. `rootSeconds`, the time spent making the base before,
    /// counts in the base's time.
    func startBase(key: String, root: @escaping () throws -> String, early: @escaping () -> EarlyCompression? = { nil },
                   description: String, rootSeconds: Double) throws {
        let start = Date(), created = newCreated
        let making = BaseCapture(key: key, start: start, rootSeconds: rootSeconds)
        pendingBase = making
        // The pass is used from both threads: until `ready`, this one waits; after it, the other
        // touches only the base's own entry, the blob store and the bundle, which take their locks.
        nonisolated(unsafe) let pass = self, makeRoot = root, earlyMembers = early
        let thread = Thread {
            making.finish(Result {
                if pass.driver.referencedTree(key) != nil { _ = try makeRoot() }
                return try pass.cachedLayer(key, what: "the base", started: start, before: rootSeconds, created: created, storing: false) {
                    let tree = try makeRoot()
                    pass.events.note("container: the steps stand on the base root itself; its layer is captured beside the first steps")
                    try pass.driver.referenceTree(key, tree: tree)
                    do {
                        return try pass.capture("the base") { tee in
                            // The driver layer is whole, and the bundle takes this layer before any step's.
                            making.ready()
                            // Beside the steps, as background work (nice 10 and the idle cpu
                            // cgroup, this thread and the compression's): the steps, which the
                            // build waits for, come first, and the capture
                            // takes the CPU time they leave (an apt step waits on the network and
                            // the disk half the time). Both sides at once: one thread.
                            var options = pass.captureOptions
                            options.nice = 10
                            // What was compressed while mmdebstrap made the root.
                            let early = earlyMembers()
                            options.precompressed = early?.files
                            defer { if let early { making.tookEarly(early.files.bytesTaken); pass.note(early, "mmdebstrap made the root") } }
                            if pass.sharesMachine { options.threads = 1 }
                            return try Processors.inBackground(nice: 10) {
                                try LayerCapture.capture(.tree(tree), into: pass.blobs, options: options, tee: tee).layer
                            }
                        }
                    } catch {
                        making.failing(error)
                        throw error
                    }
                }
            })
        }
        thread.name = "imgbench base layer"
        thread.stackSize = 8 << 20
        thread.start()
        making.waitReady()
        if let failure = making.failure {
            pendingBase = nil
            throw failure
        }
        top = key
        layers = []
        self.created = making.record.map { createdTime(of: $0, key: key) } ?? created
        history = [History(created: self.created, createdBy: "imgbench: base \(description)", emptyLayer: nil)]
    }

    /// Waits for the base layer `startBase` began, and returns its measure. Its `seconds` are
    /// what the container side waited for (the root, the driver layer); the capture that ran
    /// beside the steps after it is in `builtSeconds` and `besideStepsSeconds`. Throws the
    /// capture's failure: the base's blob is then missing, and the build fails.
    func finishBase() throws -> BuildReport.Measure {
        guard let making = pendingBase else { throw BuildError.invalid("container: no base layer was started") }
        pendingBase = nil
        // Waited for from here on: no longer idle work.
        IdleCPUGroup.promoteAll()
        making.release()
        let (record, hit) = try making.wait()
        try storeLayer(making.key, record)
        layers.insert(record.layer, at: 0)
        let waited = making.readySeconds
        var m = measure(record, seconds: waited, hit: hit)
        if !hit, let built = record.builtSeconds {
            m.seconds = waited
            m.besideStepsSeconds = max(0, built - waited)
            m.earlyCompressedBytes = making.earlyTaken.map(UInt64.init)
        }
        return m
    }

    /// The base layer being made beside the first steps (`startBase`, `finishBase`).
    private var pendingBase: BaseCapture?

    /// Throws once the capture of the base layer beside the steps has failed: asked before each
    /// step, so that a build whose image cannot be whole stops early.
    func checkBase() throws { try pendingBase?.check() }

    /// The base from an OCI image: its layers, unpacked into the driver by chain ID (each under
    /// its own lock, recorded like a step's layer), become the first layers; its history is kept,
    /// and its `created` time stamps the metadata steps that follow it. `rootSeconds`, the time
    /// spent unpacking the root, counts in the base's time; what the whole base cost when built
    /// is kept in the record of its top layer (its chain ID names every layer below it).
    func base(image: ImageLayout.Image, layout: ImageLayout, rootSeconds: Double) throws -> BuildReport.Measure {
        let start = Date()
        var entries: [LayerRecord?] = []
        let ids = DriverImport.chainIDs(image.config.rootfs.diffIDs).map(\.hex)
        var hit = true
        layers = []
        for (i, (d, diff)) in zip(image.manifest.layers, image.config.rootfs.diffIDs).enumerated() {
            let layer = StoredLayer(descriptor: d, diffID: diff, uncompressedSize: 0)
            var record: LayerRecord?
            let made = try cache.entry("the base layer \(ids[i].prefix(12))", lock: "\(records)/\(ids[i]).lock", noCache: noCache,
                                       check: { let (c, r) = check(ids[i]); record = r; return c }) {
                discard(ids[i])
                try cache.sharing(blobsLock) {
                    try adopt(d, from: layout)
                    try inNewLayer(ids[i], parent: i == 0 ? nil : ids[i - 1]) { root in
                        _ = try LayerApply.apply(layer: blobs.path(of: d.digest), to: root, expecting: d.digest)
                    }
                    let r = LayerRecord(layer: layer, created: newCreated, builtSeconds: rootSeconds + Date().timeIntervalSince(start))
                    try save(r, key: ids[i])
                    record = r
                }
            }
            entries.append(record)
            hit = hit && made
            layers.append(layer)
            bundle?.add(blob: blobs.path(of: d.digest))
        }
        if !hit { bundle?.start() }
        top = ids.last
        history = image.config.history ?? layers.map { _ in History(createdBy: "imgbench: base layer") }
        created = epochCreated ?? image.config.created ?? history.last { $0.created != nil }?.created
        let built = entries.last.flatMap { $0?.builtSeconds }
        let elapsed = rootSeconds + Date().timeIntervalSince(start)
        var m = BuildReport.Measure(seconds: hit ? elapsed : built ?? elapsed, cacheHit: hit)
        m.builtSeconds = built
        m.layerCompressedBytes = image.manifest.layers.totalSize
        return m
    }

    /// Copies a blob of a layout into the cache's store, through a temporary file renamed when
    /// its digest is checked (a copy cut short is never taken for the blob).
    func adopt(_ d: Descriptor, from layout: ImageLayout) throws {
        if (try? blobs.verify(d)) != nil { return }
        unlink(blobs.path(of: d.digest))
        let w = try blobs.writer()
        try FileSystem.readChunks(layout.blobs.path(of: d.digest)) { try w.write($0) }
        let (digest, _) = try w.commit()
        guard digest == d.digest else {
            unlink(blobs.path(of: digest))
            throw OCIError.digestMismatch(path: layout.blobs.path(of: d.digest), expected: d.digest.description, actual: digest.description)
        }
    }

    /// One formatter for every history entry: making one per metadata step was a third of the
    /// time of a recipe of 100k LABELs.
    private let dates = ISO8601DateFormatter()

    /// The `created` time of the image and of the history entries of its metadata steps: when
    /// its newest layer was made. A rebuild from the cache thus gives the image the build that
    /// made the entries gave.
    private(set) var created: String?

    /// SOURCE_DATE_EPOCH as an RFC 3339 time, when it is set: it stamps every entry and the image.
    var epochCreated: String? {
        (sourceDateEpoch ?? CaptureOptions.environmentEpoch).map { dates.string(from: Date(timeIntervalSince1970: TimeInterval($0))) }
    }

    /// The time a layer made now is recorded with.
    var newCreated: String { epochCreated ?? dates.string(from: Date()) }

    /// When the layer of `record` was made, as its history entry says: SOURCE_DATE_EPOCH when
    /// set, else the time its record keeps, else (a record written before it was kept) the time
    /// its record file was written.
    func createdTime(of record: LayerRecord, key: String) -> String? {
        if let t = epochCreated ?? record.created { return t }
        let written = (try? FileManager.default.attributesOfItem(atPath: "\(records)/\(key).json"))?[.modificationDate] as? Date
        return dates.string(from: written ?? Date())
    }

    /// A metadata step: only a history entry.
    func metadata(_ text: String) {
        history.append(History(created: created, createdBy: text, emptyLayer: true))
    }

    /// A step that changes files: prepared on the current top, `work` run in the writable root,
    /// the diff captured.
    func step(key: String, text: String, _ work: (_ root: String) throws -> Void) throws -> BuildReport.Measure {
        let start = Date()
        var captured: (seconds: Double, early: Int64)?
        let (record, hit) = try cachedLayer(key, what: text, started: start) {
            // The bundle's layers so far are unpacked while this step runs.
            bundle?.start()
            return try inNewLayer(key, parent: top) { root in
                let early = try earlyCompression(of: key)
                defer { early?.stop() }
                try work(root)
                let after = Date()
                early?.stop()
                // The bundle applies this layer after the base's: a base capture still running
                // is now waited for, and must not wait at idle priority.
                if pendingBase != nil { IdleCPUGroup.promoteAll() }
                var options = captureOptions
                options.precompressed = early?.files
                let layer = try capture(text) { try driver.capture(key, into: blobs, options: options, tee: $0).layer }
                captured = (Date().timeIntervalSince(after), early?.files.bytesTaken ?? 0)
                if let early { note(early, "the step ran") }
                return layer
            }
        }
        top = key
        layers.append(record.layer)
        created = createdTime(of: record, key: key)
        history.append(History(created: created, createdBy: text, emptyLayer: nil))
        var m = measure(record, seconds: Date().timeIntervalSince(start), hit: hit)
        if !hit, let captured {
            m.captureSeconds = captured.seconds
            m.earlyCompressedBytes = UInt64(captured.early)
        }
        return m
    }

    /// Says what `early` did while `what`, and what the capture took of it.
    func note(_ early: EarlyCompression, _ what: String) {
        let d = early.done, l = early.files.lookupCounts
        guard d.files > 0 else { return }
        let mib = { (b: Int64) in String(format: "%.1f MiB", Double(b) / 1048576) }
        events.note("container: compressed while \(what): \(d.files) files, \(mib(d.bytes)), in \(d.walks) walks "
            + "(\(d.kept) unchanged after their read); the capture took \(l.found) of them, \(mib(early.files.bytesTaken)) "
            + "(\(l.absent) large files came too late, \(l.changed + l.crcMismatches) had changed since)")
    }

    /// Compresses the large files a step writes while it runs, on threads at nice 10, for its
    /// capture (`EarlyCompression`): nil where the layer is not gzip or its driver has no
    /// directory of the layer's own changes (vfs, btrfs).
    func earlyCompression(of key: String) throws -> EarlyCompression? {
        guard let upper = try driver.diffSource(key).upperDirectory else { return nil }
        return Self.earlyCompression(watching: upper, options: captureOptions)
    }

    /// Compresses the large files written into `folder` (a step's upper directory, the base root
    /// mmdebstrap makes) for a capture with `options`: nil where that is not gzip, or where
    /// `IMGBENCH_EARLY_COMPRESSION=0`. apt's lists and downloaded packages are left out: a step
    /// that follows Docker's advice removes them before it ends (`apt-get clean`, `rm -rf
    /// /var/lib/apt/lists/*`), as mmdebstrap does, and a step that keeps them has them
    /// compressed by its capture.
    static func earlyCompression(watching folder: String, options: CaptureOptions) -> EarlyCompression? {
        guard options.compression == .gzip, ProcessInfo.processInfo.environment["IMGBENCH_EARLY_COMPRESSION"] != "0" else { return nil }
        let files = PrecompressedFiles(level: options.level ?? LayerCompression.gzip.defaultLevel)
        return EarlyCompression(watching: folder, into: files, threads: options.threads, skipping: aptDownloads)
    }

    /// Where apt keeps its lists and downloads, relative to a root.
    static let aptDownloads: Set<String> = ["var/cache/apt", "var/lib/apt/lists"]

    /// The layer of step `key`: the cached one (a hit, its blob handed to the bundle), else the
    /// one `make` makes under the entry's lock, after forgetting any leftover of `key`, recorded
    /// once it is complete with the time and the seconds since `started` (plus `before`) it took.
    /// SIGINT/SIGTERM while it is made remove the unfinished driver layer.
    /// A layer from the registry of `--cache-from` is a hit too; whichever it was, it is then
    /// stored in the registry of `--cache-to`.
    /// `created`: the time the record keeps when it is made here (else the time it is recorded);
    /// `storing`: false when the caller stores it in the `--cache-to` registry itself.
    func cachedLayer(_ key: String, what: String, started: Date, before: Double = 0, created: String? = nil, storing: Bool = true,
                     make: () throws -> StoredLayer) throws -> (record: LayerRecord, hit: Bool) {
        var found: LayerRecord?
        var fetched = false
        let parent = top
        let local = try cache.entry("the container layer of \(what)", lock: "\(records)/\(key).lock", noCache: noCache, check: {
            let (c, l) = check(key)
            found = l
            return c
        }) {
            discard(key)
            let token = Cleanup.register("remove the unfinished layer \(key.prefix(12))") { [driver] in try? driver.remove(key) }
            defer { Cleanup.unregister(token) }
            found = try cache.sharing(blobsLock) {
                if let layer = try fetchLayer(key, parent: parent) {
                    fetched = true
                    try save(layer, key: key)
                    return layer
                }
                let layer = try make()
                let record = LayerRecord(layer: layer, created: created ?? newCreated, builtSeconds: before + Date().timeIntervalSince(started))
                try save(record, key: key)
                return record
            }
        }
        // An entry this build already held is used without a check: its record is read here.
        guard let record = found ?? (local ? check(key).1 : nil) else { throw BuildError.invalid("container: no layer recorded for \(what)") }
        if storing { try storeLayer(key, record) }
        let hit = local || fetched
        if hit { bundle?.add(blob: blobs.path(of: record.layer.descriptor.digest)) }
        return (record, hit)
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
        return try bundle.capturing(name, digest: \.descriptor.digest) { try body($0) }
    }

    /// A layer made now took the seconds its record keeps; a cached one took `seconds` to look up.
    func measure(_ r: LayerRecord, seconds: Double, hit: Bool) -> BuildReport.Measure {
        let l = r.layer
        var m = BuildReport.Measure(seconds: hit ? seconds : r.builtSeconds ?? seconds, cacheHit: hit)
        m.builtSeconds = r.builtSeconds
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
