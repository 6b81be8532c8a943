/// The config's `rootfs`: the uncompressed digests (diff_ids) of the layers, bottom first.
public struct RootFS: Codable, Sendable, Equatable {
    public var type: String = "layers"
    public var diffIDs: [Digest]

    enum CodingKeys: String, CodingKey {
        case type
        case diffIDs = "diff_ids"
    }

    public init(diffIDs: [Digest]) { self.diffIDs = diffIDs }
}
