import Foundation
import Host

/// An OCI image layout on disk (image-spec v1.1, `image-layout.md`):
///
/// ```
/// DIR/oci-layout            {"imageLayoutVersion":"1.0.0"}
/// DIR/index.json            an Index; each manifest tagged by org.opencontainers.image.ref.name
/// DIR/blobs/sha256/<hex>    manifests, configs and layers, by digest
/// ```
///
/// Several images in one layout share one blob store, so a layer they have in common is stored once.
public final class ImageLayout: Sendable {
    public let path: String
    public let blobs: BlobStore

    var indexPath: String { path + "/index.json" }

    /// Opens an existing layout.
    public init(opening path: String) throws {
        self.path = path
        blobs = BlobStore(root: path)
        let marker = path + "/oci-layout"
        guard let data = FileManager.default.contents(atPath: marker) else {
            throw OCIError.notALayout(path: path, reason: "no oci-layout file")
        }
        let file = try CanonicalJSON.decode(ImageLayoutFile.self, from: data, path: marker)
        guard file.imageLayoutVersion.hasPrefix("1.") else {
            throw OCIError.notALayout(path: path, reason: "imageLayoutVersion \(file.imageLayoutVersion) is not 1.x")
        }
    }

    /// Opens a layout, creating an empty one first if there is none.
    public static func create(at path: String) throws -> ImageLayout {
        try FileSystem.makeDirectories(path + "/blobs/sha256")
        if !FileSystem.exists(path + "/oci-layout") {
            try writeAtomically(CanonicalJSON.encode(ImageLayoutFile()), to: path + "/oci-layout")
        }
        if !FileSystem.exists(path + "/index.json") {
            try writeAtomically(CanonicalJSON.encode(Index()), to: path + "/index.json")
        }
        return try ImageLayout(opening: path)
    }

    public func index() throws -> Index {
        guard let data = FileManager.default.contents(atPath: indexPath) else {
            throw OCIError.notALayout(path: path, reason: "no index.json")
        }
        return try CanonicalJSON.decode(Index.self, from: data, path: indexPath)
    }

    public func writeIndex(_ index: Index) throws {
        try Self.writeAtomically(CanonicalJSON.encode(index), to: indexPath)
    }

    /// Stores a JSON document as a blob.
    public func putJSON<T: Encodable>(_ value: T, mediaType: String) throws -> Descriptor {
        try blobs.put(CanonicalJSON.encode(value), mediaType: mediaType)
    }

    public func readJSON<T: Decodable>(_ type: T.Type, _ d: Descriptor) throws -> T {
        try CanonicalJSON.decode(type, from: blobs.read(d), path: blobs.path(of: d.digest))
    }

    /// Points `tag` at a manifest in index.json, replacing whatever had that tag.
    public func tag(_ manifest: Descriptor, as tag: String) throws {
        var idx = try index()
        idx.manifests.removeAll { $0.refName == tag }
        var d = manifest
        d.annotations = (d.annotations ?? [:]).merging([AnnotationKey.refName: tag]) { _, new in new }
        idx.manifests.append(d)
        try writeIndex(idx)
    }

    /// The manifest descriptor for a tag: with no tag, the only image of the layout. An index
    /// inside the layout (a multi-platform image) resolves to this machine's platform.
    public func resolve(tag: String?) throws -> Descriptor {
        let idx = try index()
        let d: Descriptor
        if let tag {
            guard let m = idx.manifests.first(where: { $0.refName == tag }) else {
                throw OCIError.tagNotFound(layout: path, tag: tag)
            }
            d = m
        } else {
            guard idx.manifests.count == 1 else {
                throw OCIError.invalidArgument(
                    "\(path): holds \(idx.manifests.count) images; name one with :TAG (tags: \(idx.manifests.compactMap(\.refName).joined(separator: ", ")))")
            }
            d = idx.manifests[0]
        }
        return try resolveNested(d)
    }

    func resolveNested(_ d: Descriptor) throws -> Descriptor {
        guard MediaType.isIndex(d.mediaType) else { return d }
        let nested = try readJSON(Index.self, d)
        let here = Platform.current
        guard let m = nested.manifests.first(where: { $0.platform?.os == here.os && $0.platform?.architecture == here.architecture })
            ?? nested.manifests.first
        else {
            throw OCIError.invalidDocument(path: blobs.path(of: d.digest), reason: "image index lists no manifests")
        }
        return try resolveNested(m)
    }

    public func manifest(_ d: Descriptor) throws -> Manifest {
        guard MediaType.isManifest(d.mediaType) || d.mediaType.isEmpty else {
            throw OCIError.invalidDocument(path: blobs.path(of: d.digest), reason: "media type \(d.mediaType) is not an image manifest")
        }
        return try readJSON(Manifest.self, d)
    }

    public func config(_ m: Manifest) throws -> ImageConfig {
        let c = try readJSON(ImageConfig.self, m.config)
        try c.validate(layers: m.layers.count, path: blobs.path(of: m.config.digest))
        return c
    }

    /// One image of the layout, as far as it can be read.
    public struct Image: Sendable {
        public var tag: String?
        public var manifestDescriptor: Descriptor
        public var manifest: Manifest
        public var config: ImageConfig
    }

    public func image(tag: String?) throws -> Image {
        let d = try resolve(tag: tag)
        let m = try manifest(d)
        return Image(tag: tag ?? d.refName, manifestDescriptor: d, manifest: m, config: try config(m))
    }

    /// Every tagged (or untagged) image listed in index.json.
    public func images() throws -> [Image] {
        try index().manifests.map { d in
            let r = try resolveNested(d)
            let m = try manifest(r)
            return Image(tag: d.refName, manifestDescriptor: r, manifest: m, config: try config(m))
        }
    }

    /// Writes the manifest and config of an image whose layer blobs are already stored, and tags it.
    /// `history` covers every step, layers and empty ones, in order.
    @discardableResult
    public func writeImage(layers: [StoredLayer], config: ContainerConfig?, history: [History],
                           created: String?, tag: String?, platform: Platform = .current) throws -> Descriptor {
        let nonEmpty = history.filter { $0.emptyLayer != true }.count
        guard nonEmpty == layers.count else {
            throw OCIError.invalidArgument("history has \(nonEmpty) layer steps for \(layers.count) layers")
        }
        // Every layer must be there with its size; digests were checked when the blobs were
        // written and are checked again whenever they are read.
        for l in layers {
            let p = blobs.path(of: l.descriptor.digest)
            guard let st = try FileSystem.lstatIfExists(p) else {
                throw OCIError.blobNotFound(layout: path, digest: l.descriptor.digest.description)
            }
            guard Int64(st.st_size) == l.descriptor.size else {
                throw OCIError.sizeMismatch(path: p, digest: l.descriptor.digest.description, expected: l.descriptor.size, actual: Int64(st.st_size))
            }
        }
        let cfg = ImageConfig(platform: platform, created: created, config: config,
                              rootfs: RootFS(diffIDs: layers.map(\.diffID)), history: history)
        let cd = try putJSON(cfg, mediaType: MediaType.imageConfig)
        let manifest = Manifest(config: cd, layers: layers.map(\.descriptor))
        var md = try putJSON(manifest, mediaType: MediaType.imageManifest)
        md.platform = platform
        if let tag { try self.tag(md, as: tag) } else {
            var idx = try index()
            idx.manifests.append(md)
            try writeIndex(idx)
        }
        return md
    }

    package static func writeAtomically(_ data: Data, to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else {
            throw OCIError.io(path: tmp, operation: "create", errno: errno)
        }
        guard rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw OCIError.io(path: path, operation: "rename", errno: e)
        }
    }
}

/// A layer blob in a store with what its config needs: the descriptor of the (possibly
/// compressed) blob and the digest of the uncompressed tar.
public struct StoredLayer: Sendable, Equatable, Codable {
    public var descriptor: Descriptor
    public var diffID: Digest
    public var uncompressedSize: Int64

    public init(descriptor: Descriptor, diffID: Digest, uncompressedSize: Int64) {
        self.descriptor = descriptor
        self.diffID = diffID
        self.uncompressedSize = uncompressedSize
    }
}
