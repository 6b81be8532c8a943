/// The config's `config`: how a container of the image runs.
public struct ContainerConfig: Codable, Sendable, Equatable {
    /// A set as the image spec writes one: keys mapped to empty objects.
    public struct EmptyObject: Codable, Sendable, Equatable {
        public init() {}
    }

    public var user: String?
    public var exposedPorts: [String: EmptyObject]?
    public var env: [String]?
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var volumes: [String: EmptyObject]?
    public var workingDir: String?
    public var labels: [String: String]?
    public var stopSignal: String?

    enum CodingKeys: String, CodingKey {
        case user = "User"
        case exposedPorts = "ExposedPorts"
        case env = "Env"
        case entrypoint = "Entrypoint"
        case cmd = "Cmd"
        case volumes = "Volumes"
        case workingDir = "WorkingDir"
        case labels = "Labels"
        case stopSignal = "StopSignal"
    }

    public init(user: String? = nil, exposedPorts: [String]? = nil, env: [String]? = nil, entrypoint: [String]? = nil,
                cmd: [String]? = nil, volumes: [String]? = nil, workingDir: String? = nil, labels: [String: String]? = nil) {
        self.user = user
        self.exposedPorts = exposedPorts.map { Dictionary(uniqueKeysWithValues: $0.map { ($0, EmptyObject()) }) }
        self.env = env
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.volumes = volumes.map { Dictionary(uniqueKeysWithValues: $0.map { ($0, EmptyObject()) }) }
        self.workingDir = workingDir
        self.labels = labels
    }
}
