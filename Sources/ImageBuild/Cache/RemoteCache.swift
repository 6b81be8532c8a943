import Foundation
import Host
import OCI
import Registry

/// Where a build's cache entries go to and come from in a registry
/// (`imgbench build --cache-to REGISTRY/REPO --cache-from REGISTRY/REPO`).
public struct RemoteCacheSettings: Sendable {
    public var from: ImageReference?
    public var to: ImageReference?
    public var options = RegistryClient.Options()

    public init() {}

    public var isEmpty: Bool { from == nil && to == nil }
}

/// The build cache shared through a registry: each entry one OCI artifact tagged by its key.
///
/// ```
/// REPO:layer-KEY            a container step's layer: files `layer` (the blob as built) and
///                           `record.json` (its descriptor, diff ID, created time and cost)
/// REPO:vm-SETTINGS-KEY      a VM step's link: `link.qcow2` (backed by its parent's file name),
///                           `record.json` (its digests and cost), and for the finalisation
///                           `boot-vmlinuz`, `boot-initrd.img`
/// ```
/// An artifact (image-spec 1.1, artifact type `application/vnd.imgbench.cache-entry.v1`) holds
/// the files as layers, named by their `org.opencontainers.image.title`; blobs the repository
/// has already are not sent again, so a step shared by many recipes is stored once. A key names
/// everything the entry depends on (`BuildPlan`), so a tag is never moved to other content,
/// only rewritten with the same. Fetching is best effort, as buildx's `--cache-from`: an entry that
/// is missing is a miss and the step is built; a registry that cannot give one (refused
/// connection, TLS, credentials, a 5xx after the client's retries) is a warning on standard
/// error, once, and the rest of the build does not ask it again (so an unreachable registry costs
/// one timeout, not one per step). Storing is not best effort: a build asked to fill a registry
/// that refuses fails, naming it.
///
/// A step that saw a secret (`RUN --mount=type=secret`) is never stored (`withoutStoring`): its
/// layer or link may hold what the secret let it fetch, and a registry is shared further than the
/// machine the secret was given on. It is still taken from `--cache-from` when there (stored by a
/// build that ran it without the secret mounted, it holds nothing secret either).
final class RemoteCache {
    static let artifactType = "application/vnd.imgbench.cache-entry.v1"
    let settings: RemoteCacheSettings
    let events: BuildEvents
    /// Whether the `--cache-from` registry gave an error; no entry is asked for after one.
    /// Shared by the two sides' remote caches of a build, so that it is said once.
    private let failure: FetchFailure
    var fetchFailed: Bool { failure.failed }
    /// False while a step that saw a secret runs (on this side: each side has its own).
    private(set) var storing = true

    init(settings: RemoteCacheSettings, events: BuildEvents) {
        self.settings = settings
        self.events = events
        failure = FetchFailure()
    }

    private init(_ other: RemoteCache) {
        settings = other.settings
        events = other.events
        failure = other.failure
    }

    /// The remote cache of the build's other side, which runs at the same time: its own storing
    /// switch, the same `--cache-from` state.
    func forOtherSide() -> RemoteCache { RemoteCache(self) }

    /// Whether `--cache-from` gave an error, set by the first side that met one.
    final class FetchFailure: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        var failed: Bool { lock.withLock { value } }
        /// Marks the failure; true for the first caller only.
        func set() -> Bool { lock.withLock { defer { value = true }; return !value } }
    }

    /// `use` of the files of entry `tag`, fetched into the folder `dir` by name (made afresh, and
    /// removed when `use` ends, fails, or Ctrl-C stops the build), with their digests (each file
    /// was checked against its digest as it came); nil, without calling `use`, when the registry
    /// has no such entry or cannot give it.
    func fetch<T>(_ tag: String, into dir: String, _ use: (_ dir: String, _ digests: [String: Digest]) throws -> T) throws -> T? {
        guard let from = settings.from, !fetchFailed else { return nil }
        return try BuildCache.makingPartial(dir) { () -> T? in
            defer { try? FileSystem.removeTree(dir) }
            guard let digests = fetched(tag, from: from, into: dir) else { return nil }
            return try use(dir, digests)
        }
    }

    private func fetched(_ tag: String, from: ImageReference, into dir: String) -> [String: Digest]? {
        do {
            try FileSystem.makeDirectories(dir + "/.fetch", mode: 0o700)
            return try RegistryClient.blocking(from, options: settings.options) { client in
                try await Self.fetch(tag, from: from.repository, into: dir, client: client)
            }
        } catch {
            if failure.set() {
                events.warning("--cache-from \(from): \(tag) cannot be fetched, so this build uses its local cache only: \(HostError.line(error))")
            }
            return nil
        }
    }

    /// The entry's files by name with their digests; nil when the registry has no such entry.
    static func fetch(_ tag: String, from repository: String, into dir: String, client: RegistryClient) async throws -> [String: Digest]? {
        guard let m = try await client.manifest(repository, reference: tag) else { return nil }
        let manifest = try CanonicalJSON.decode(Manifest.self, from: m.data, path: "\(client.registry)/\(repository):\(tag)")
        guard manifest.artifactType == artifactType else { return nil }
        let store = BlobStore(root: dir + "/.fetch")
        var digests: [String: Digest] = [:]
        for layer in manifest.layers {
            guard let name = layer.annotations?[AnnotationKey.title], !name.isEmpty, !name.contains("/"), !name.hasPrefix(".") else {
                throw RegistryError.invalidResponse(registry: client.registry, repository: repository, operation: "GET manifest \(tag)",
                                                    message: "a file of the cache entry has no plain name")
            }
            try await client.fetchBlob(repository, layer, into: store)
            try FileSystem.rename(store.path(of: layer.digest), to: "\(dir)/\(name)")
            digests[name] = layer.digest
        }
        return digests
    }

    /// `body` with nothing stored in the registry, when `secret` (a step that mounts a secret).
    func withoutStoring<T>(if secret: Bool, _ body: () throws -> T) rethrows -> T {
        guard secret else { return try body() }
        storing = false
        defer { storing = true }
        events.note("cache: a step that mounts a secret is not stored in \(settings.to.map { "\($0)" } ?? "the registry")")
        return try body()
    }

    /// Stores files (name: path) as entry `tag`. `digests`: those the caller's records hold
    /// already (the registry checks each as it comes), so that a build storing its hits does not
    /// read every layer and link again; the others are read here.
    func store(_ tag: String, files: [String: String], digests: [String: Digest] = [:]) throws {
        guard let to = settings.to, storing else { return }
        let repository = to.repository
        try RegistryClient.blocking(to, options: settings.options) { client in
            var layers: [Descriptor] = []
            for (name, path) in files.sorted(by: { $0.key < $1.key }) {
                let (digest, size) = try digests[name].map { ($0, Int64(try FileSystem.lstat(path).st_size)) } ?? Digest.ofFile(path)
                var d = Descriptor(mediaType: "application/octet-stream", digest: digest, size: size)
                _ = try await client.pushBlob(repository, d, file: path)
                d.annotations = [AnnotationKey.title: name]
                layers.append(d)
            }
            let empty = try await client.pushBlob(repository, data: Data("{}".utf8), mediaType: MediaType.empty)
            var m = Manifest(config: empty, layers: layers, annotations: nil)
            m.artifactType = Self.artifactType
            try await client.putManifest(repository, reference: tag, data: try CanonicalJSON.encode(m), mediaType: MediaType.imageManifest)
        }
    }
}
