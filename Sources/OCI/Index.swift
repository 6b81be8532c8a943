/// An image index, as the `index.json` of a layout and as a multi-platform manifest list.
public struct Index: Codable, Sendable, Equatable {
    public var schemaVersion: Int = 2
    public var mediaType: String? = MediaType.imageIndex
    public var artifactType: String?
    public var manifests: [Descriptor]
    public var subject: Descriptor?
    public var annotations: [String: String]?

    public init(manifests: [Descriptor] = [], annotations: [String: String]? = nil) {
        self.manifests = manifests
        self.annotations = annotations
    }
}
