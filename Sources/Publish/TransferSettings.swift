import Registry

/// What `OutputPush` and `OutputPull` share: the client's options, the suffix of the
/// containerDisk's tag, and what they tell as they go.
public struct TransferSettings: Sendable {
    public var options: RegistryClient.Options
    /// The containerDisk image is tagged TAG followed by this.
    public var vmTagSuffix = "-vm"
    /// Told as each blob goes up or comes down.
    public var progress: TransferProgress?
    /// Told what is being done, one line each.
    public var note: (@Sendable (String) -> Void)?
    /// A push: another repository of the same registry to mount blobs from (what it holds is
    /// linked, not uploaded again).
    public var mountFrom: String?

    public init(options: RegistryClient.Options = .init()) { self.options = options }
}

/// A push or a pull: what it reads of its settings.
protocol Transfer {
    var settings: TransferSettings { get }
}

extension Transfer {
    var note: (@Sendable (String) -> Void)? { settings.note }
    var progress: TransferProgress? { settings.progress }
    var vmTagSuffix: String { settings.vmTagSuffix }
}
