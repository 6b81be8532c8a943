/// The `oci-layout` file at the root of a layout.
public struct ImageLayoutFile: Codable, Sendable, Equatable {
    public var imageLayoutVersion: String = "1.0.0"
    public init() {}
}
