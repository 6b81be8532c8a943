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

    enum CodingKeys: String, CodingKey { case mediaType, digest, size, urls, annotations, platform, artifactType }

    /// A descriptor's size is a non-negative int64 (image-spec, descriptor.md); a negative one is
    /// refused here, where the JSON path is known, not where bytes are summed.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        mediaType = try c.decode(String.self, forKey: .mediaType)
        digest = try c.decode(Digest.self, forKey: .digest)
        size = try c.decode(Int64.self, forKey: .size)
        guard size >= 0 else {
            throw DecodingError.dataCorruptedError(forKey: .size, in: c, debugDescription: "size \(size) is negative; a blob's size is 0 or more bytes")
        }
        urls = try c.decodeIfPresent([String].self, forKey: .urls)
        annotations = try c.decodeIfPresent([String: String].self, forKey: .annotations)
        platform = try c.decodeIfPresent(Platform.self, forKey: .platform)
        artifactType = try c.decodeIfPresent(String.self, forKey: .artifactType)
    }

    /// The tag of a manifest descriptor in an index, `org.opencontainers.image.ref.name`.
    public var refName: String? { annotations?[AnnotationKey.refName] }
}

extension Sequence where Element == Descriptor {
    /// The blobs' sizes summed, saturating at `UInt64.max` (each size is at most 2^63 - 1, and
    /// a manifest may list many).
    public var totalSize: UInt64 {
        reduce(UInt64(0)) { sum, d in
            let (s, overflow) = sum.addingReportingOverflow(UInt64(clamping: d.size))
            return overflow ? .max : s
        }
    }
}
