/// A content descriptor: what a blob is, its digest and size.
public struct Descriptor: Codable, Sendable, Equatable, Hashable {
    public var mediaType: String
    public var digest: Digest
    public var size: Int64
    public var urls: [String]?
    public var annotations: [String: String]?
    public var platform: Platform?
    public var artifactType: String?

    public init(mediaType: String, digest: Digest, size: Int64, annotations: [String: String]? = nil, platform: Platform? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
        self.platform = platform
    }

    /// The tag of a manifest descriptor in an index, `org.opencontainers.image.ref.name`.
    public var refName: String? { annotations?[AnnotationKey.refName] }
}
