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
    /// HEALTHCHECK, as docker writes it (`Healthcheck`, durations in nanoseconds).
    public var healthcheck: HealthConfig?
    /// ONBUILD triggers, as written after ONBUILD.
    public var onBuild: [String]?

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
        case healthcheck = "Healthcheck"
        case onBuild = "OnBuild"
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

/// The config's `Healthcheck` as docker writes it: the test and durations in nanoseconds, each
/// left out when not set.
public struct HealthConfig: Codable, Sendable, Equatable {
    public var test: [String]
    public var interval: Int64?
    public var timeout: Int64?
    public var startPeriod: Int64?
    public var startInterval: Int64?
    public var retries: Int?

    enum CodingKeys: String, CodingKey {
        case test = "Test"
        case interval = "Interval"
        case timeout = "Timeout"
        case startPeriod = "StartPeriod"
        case startInterval = "StartInterval"
        case retries = "Retries"
    }

    public init(test: [String], interval: Int64? = nil, timeout: Int64? = nil, startPeriod: Int64? = nil,
                startInterval: Int64? = nil, retries: Int? = nil) {
        self.test = test
        self.interval = interval
        self.timeout = timeout
        self.startPeriod = startPeriod
        self.startInterval = startInterval
        self.retries = retries
    }
}
