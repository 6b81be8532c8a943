import Foundation
import NIOCore
import NIOFoundationCompat
import OCI

/// Whole images and artifacts, between an OCI image layout and a repository.
extension RegistryClient {
    /// Pushes an image of a layout (its config and layers, then its manifest by digest, byte for
    /// byte, so the registry holds the same digest). Tags nothing: the caller tags last.
    public func pushImage(_ layout: ImageLayout, manifest d: Descriptor, to repository: String,
                          mountFrom: String? = nil, progress: TransferProgress? = nil) async throws -> [BlobOutcome] {
        let data = try layout.blobs.read(d)
        let manifest = try CanonicalJSON.decode(Manifest.self, from: data, path: layout.blobs.path(of: d.digest))
        let blobs = [manifest.config] + manifest.layers
        let files = blobs.map { layout.blobs.path(of: $0.digest) }
        let outcomes = try await Self.concurrently(blobs.count) { i in
            try await self.pushBlob(repository, blobs[i], file: files[i], mountFrom: mountFrom, progress: progress)
        }
        try await putManifest(repository, reference: d.digest.description, data: data, mediaType: d.mediaType)
        return outcomes
    }

    /// Pulls an image manifest with its config and layers into a layout, tagged `tag` there;
    /// returns its descriptor there (with the platform its config names).
    @discardableResult
    public func pullImage(_ repository: String, _ remote: RemoteManifest, into layout: ImageLayout, tag: String,
                          progress: TransferProgress? = nil) async throws -> Descriptor {
        guard MediaType.isManifest(remote.mediaType) else {
            throw RegistryError.invalidResponse(registry: registry, repository: repository, operation: "GET manifest \(remote.digest)",
                                                message: "\(remote.mediaType) is not an image manifest")
        }
        let manifest = try CanonicalJSON.decode(Manifest.self, from: remote.data, path: "\(registry)/\(repository)@\(remote.digest)")
        let blobs = [manifest.config] + manifest.layers, store = layout.blobs
        _ = try await Self.concurrently(blobs.count) { i in try await self.fetchBlob(repository, blobs[i], into: store, progress: progress) }
        var d = try layout.blobs.put(remote.data, mediaType: remote.mediaType)
        let config = try layout.readJSON(ImageConfig.self, manifest.config)
        d.platform = Platform(architecture: config.architecture, os: config.os, variant: config.variant)
        try layout.tag(d, as: tag)
        return d
    }

    /// One file to push as an OCI artifact.
    public struct ArtifactFile: Sendable {
        public var data: Data
        /// Its title in the artifact (`org.opencontainers.image.title`).
        public var name: String
        public var fileType: String
        public var artifactType: String
        public var annotations: [String: String]

        public init(data: Data, name: String, fileType: String, artifactType: String, annotations: [String: String] = [:]) {
            self.data = data
            self.name = name
            self.fileType = fileType
            self.artifactType = artifactType
            self.annotations = annotations
        }
    }

    /// Pushes one file as an OCI artifact (image-spec 1.1: the empty config, the file as its one
    /// layer, `artifactType`) whose `subject` is another manifest, by digest, and lists it as a
    /// referrer of the subject: by the registry itself when it processes `subject`, else in the
    /// referrers tag. Returns the artifact's descriptor.
    @discardableResult
    public func pushArtifact(_ repository: String, file: Data, name: String, fileType: String, artifactType: String,
                             subject: Descriptor, annotations: [String: String] = [:]) async throws -> Descriptor {
        let one = ArtifactFile(data: file, name: name, fileType: fileType, artifactType: artifactType, annotations: annotations)
        return try await pushArtifacts(repository, [one], subject: subject)[0]
    }

    /// Pushes several artifacts of one subject at once (`pushArtifact`); the referrers tag, where
    /// the registry needs it, is updated once with those the registry did not list itself (one
    /// writer of the tag's index, so none is lost). The subject need not be there yet
    /// (distribution-spec 1.1 accepts a manifest whose subject is missing), so artifacts may go
    /// up beside their image. Returns their descriptors, in order.
    public func pushArtifacts(_ repository: String, _ files: [ArtifactFile], subject: Descriptor) async throws -> [Descriptor] {
        let pushed = try await Self.concurrently(files.count) { i in
            try await self.pushArtifactManifest(repository, files[i], subject: subject)
        }
        let unlisted = pushed.filter { !$0.processed }.map(\.descriptor)
        if !unlisted.isEmpty { try await addToReferrersTag(repository, subject: subject.digest, artifacts: unlisted) }
        return pushed.map(\.descriptor)
    }

    func pushArtifactManifest(_ repository: String, _ file: ArtifactFile, subject: Descriptor) async throws -> (descriptor: Descriptor, processed: Bool) {
        let empty = try await pushBlob(repository, data: Data("{}".utf8), mediaType: MediaType.empty)
        var layer = try await pushBlob(repository, data: file.data, mediaType: file.fileType)
        layer.annotations = [AnnotationKey.title: file.name]
        var m = Manifest(config: empty, layers: [layer], annotations: file.annotations.isEmpty ? nil : file.annotations)
        m.artifactType = file.artifactType
        m.subject = Descriptor(mediaType: subject.mediaType, digest: subject.digest, size: subject.size)
        let data = try CanonicalJSON.encode(m)
        var d = Descriptor(mediaType: MediaType.imageManifest, digest: Digest.of(data), size: Int64(data.count), annotations: m.annotations)
        d.artifactType = file.artifactType
        let processed = try await putManifest(repository, reference: d.digest.description, data: data, mediaType: d.mediaType)
        return (d, processed)
    }

    /// The file of the newest artifact of a type that refers to a manifest (by its
    /// `org.opencontainers.image.created` annotation), with the artifact's annotations; nil when
    /// there is none.
    public func fetchArtifact(_ repository: String, subject: Digest, artifactType: String) async throws -> (file: Data, annotations: [String: String])? {
        let found = try await referrers(repository, subject: subject, artifactType: artifactType)
        guard let newest = found.max(by: { ($0.annotations?[AnnotationKey.created] ?? "") < ($1.annotations?[AnnotationKey.created] ?? "") }),
              let m = try await manifest(repository, reference: newest.digest.description)
        else { return nil }
        let manifest = try CanonicalJSON.decode(Manifest.self, from: m.data, path: "\(registry)/\(repository)@\(m.digest)")
        guard let layer = manifest.layers.first else {
            throw RegistryError.invalidResponse(registry: registry, repository: repository, operation: "GET manifest \(m.digest)",
                                                message: "artifact \(artifactType) has no file")
        }
        let call = Call(method: .GET, url: "/v2/\(repository)/blobs/\(layer.digest)", repository: repository, operation: "GET blob \(layer.digest)")
        let response = try await send(call)
        try await expect(response, [200], call)
        let data = Data(buffer: try await response.body.collect(upTo: 64 << 20))
        guard Digest.of(data) == layer.digest else {
            throw RegistryError.invalidResponse(registry: registry, repository: repository, operation: call.operation,
                                                message: "content hashes to \(Digest.of(data))")
        }
        return (data, manifest.annotations ?? [:])
    }

    /// At most this many blobs of one image move at once (skopeo moves up to 6, docker 3 to 5):
    /// the registry hashes and stores one while the next is sent.
    static let parallelBlobs = 4

    /// `body(0..<count)`, at most `parallelBlobs` at a time, the results in index order; the first
    /// error cancels the rest.
    public static func concurrently<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) async throws -> T) async throws -> [T] {
        try await withThrowingTaskGroup(of: (Int, T).self) { group in
            var results = [T?](repeating: nil, count: count)
            var next = 0
            func start() {
                guard next < count else { return }
                let i = next
                group.addTask { (i, try await body(i)) }
                next += 1
            }
            for _ in 0..<min(parallelBlobs, count) { start() }
            while let (i, r) = try await group.next() {
                results[i] = r
                start()
            }
            return results.compactMap { $0 }
        }
    }
}
