/// The image configuration blob: platform, run configuration, layers' diff_ids and history.
public struct ImageConfig: Codable, Sendable, Equatable {
    public var created: String?
    public var author: String?
    public var architecture: String
    public var os: String
    public var variant: String?
    public var config: ContainerConfig?
    public var rootfs: RootFS
    public var history: [History]?

    public init(platform: Platform = .current, created: String? = nil, config: ContainerConfig? = nil,
                rootfs: RootFS = RootFS(diffIDs: []), history: [History]? = nil) {
        self.architecture = platform.architecture
        self.os = platform.os
        self.variant = platform.variant
        self.created = created
        self.config = config
        self.rootfs = rootfs
        self.history = history
    }

    /// Checks what the spec requires of a config against its manifest: one diff_id per layer,
    /// and as many non-empty history entries as layers when history is given.
    public func validate(layers: Int, path: String) throws {
        guard rootfs.type == "layers" else {
            throw OCIError.invalidDocument(path: path, reason: "rootfs.type is \"\(rootfs.type)\", expected \"layers\"")
        }
        guard rootfs.diffIDs.count == layers else {
            throw OCIError.invalidDocument(
                path: path, reason: "config has \(rootfs.diffIDs.count) diff_ids for \(layers) layers")
        }
        if let h = history {
            let nonEmpty = h.filter { $0.emptyLayer != true }.count
            guard nonEmpty == layers else {
                throw OCIError.invalidDocument(
                    path: path, reason: "history has \(nonEmpty) non-empty entries for \(layers) layers")
            }
        }
    }
}
