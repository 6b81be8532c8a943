import Registry

/// A parsed recipe: a Containerfile whose steps build both the container image and the VM disk.
public struct Recipe: Equatable, Sendable {
    /// The recipe's name (its folder's name), used to tag the image and name the outputs.
    public var name: String
    /// The recipe file and the build context folder.
    public var file: String
    public var context: String
    public var vm: VMSettings
    public var base: BaseImage
    public var baseLocation: SourceLocation
    /// The steps after FROM, in order, with ARG/ENV substituted where the Containerfile rules say.
    public var steps: [Step]
    /// The runtime workloads the image carries (`# workloads=`), named in the hand-off manifest,
    /// each with its place in the recipe.
    public var declaredWorkloads: [WorkloadName] = []
    /// The ARGs before FROM, with the values FROM sees.
    public var globalArgs: [GlobalArg] = []
    /// FROM's image as substituted (`debian:bookworm`), and the stage's name (`AS NAME`).
    public var baseReference = ""
    public var stageName: String?
    /// Every stage of the recipe, in order, each as a recipe of its own (with no stages); this
    /// recipe is stage `stageIndex`, the one built (the last, or the one `--target` names).
    public var stages: [Recipe] = []
    public var stageIndex = 0
    /// `FROM STAGE` (an earlier stage, by name or number): that stage's index. The base is then
    /// the earlier stage's own (and `baseReference` its image), and `steps` start with that
    /// stage's steps, `inheritedSteps` of them, so both images continue the stage's.
    public var parentStage: Int?
    public var inheritedSteps = 0

    /// The stage named `name` (or numbered, as `COPY --from=0`), as the recipe to build.
    public func stage(named name: String) -> Recipe? {
        let i = Int(name) ?? stages.firstIndex { $0.stageName?.lowercased() == name.lowercased() }
        guard let i, stages.indices.contains(i) else { return nil }
        var r = stages[i]
        (r.stages, r.stageIndex) = (stages, i)
        return r
    }

    /// The steps written in this stage (after those a `FROM STAGE` inherits).
    public var ownSteps: ArraySlice<Step> { steps.dropFirst(inheritedSteps) }

    /// The earlier stages the build of this one needs (what its COPY --from name, and theirs).
    public var neededStages: [Int] {
        var needed = Set<Int>(), queue = steps.flatMap(\.stagesRead)
        while let i = queue.popLast() {
            if needed.insert(i).inserted { queue += stages[i].steps.flatMap(\.stagesRead) }
        }
        return needed.sorted()
    }

    /// The names of the declared workloads, in order.
    public var workloads: [String] { declaredWorkloads.map(\.name) }
}

/// An ARG before FROM: its name, the value it has (nil: none), and where it stands.
public struct GlobalArg: Equatable, Sendable {
    public var name: String
    public var value: String?
    public var location: SourceLocation

    public init(name: String, value: String?, location: SourceLocation) {
        self.name = name
        self.value = value
        self.location = location
    }
}

/// A workload named by `# workloads=`, with where it is named.
public struct WorkloadName: Equatable, Sendable {
    public var name: String
    public var location: SourceLocation

    public init(name: String, location: SourceLocation) {
        self.name = name
        self.location = location
    }
}

/// Where the first layer comes from.
public enum BaseImage: Equatable, Sendable {
    /// A Debian root made with mmdebstrap from the host's apt sources; `slim` (`debian:SUITE-slim`):
    /// without documentation, man pages and locales, as Debian's slim images are.
    case debian(suite: String, variant: String, slim: Bool = false)
    /// An empty root.
    case scratch
    /// An image from an OCI layout folder (path relative to the recipe's folder, or absolute).
    case ociLayout(path: String, tag: String?)
    /// An image in a registry (`REGISTRY/REPO:TAG`, `REPO@sha256:HEX`), pulled by digest.
    case registry(ImageReference)
    /// `NAME[:TAG]` that only imgbench's local image store can hold (an image an earlier build
    /// tagged so, `imgbench build -t NAME:TAG`); the store is asked first for every other
    /// reference too but `scratch` and `oci:` (`Builder.localImage`).
    case local(String)
}

/// An image named where docker takes a stage or an image (`COPY --from=IMAGE`): the reference
/// as written and the base it names.
public struct ImageSource: Equatable, Sendable {
    public var reference: String
    public var base: BaseImage

    public init(reference: String, base: BaseImage) {
        self.reference = reference
        self.base = base
    }
}

/// Which build a step belongs to.
public enum StepTarget: String, Equatable, Sendable, CaseIterable {
    case both, container, vm

    public func includes(_ t: StepTarget) -> Bool { self == .both || self == t }
}

/// A command in shell form (run through the recipe's SHELL) or exec form (a JSON array).
public enum CommandForm: Equatable, Sendable {
    case shell(String)
    case exec([String])

    /// The argument vector to execute, given the shell in force.
    public func argv(shell: [String]) -> [String] {
        switch self {
        case let .shell(s): return shell + [s]
        case let .exec(a): return a
        }
    }
}

public struct Step: Equatable, Sendable {
    public enum Instruction: Equatable, Sendable {
        case run(CommandForm)
        case copy(sources: [String], destination: String, chown: String?, chmod: String?)
        case add(sources: [String], destination: String, chown: String?, chmod: String?)
        case env([KeyValue])
        case arg(name: String, value: String?)
        case workdir(String)
        case user(String)
        case label([KeyValue])
        case cmd(CommandForm)
        case entrypoint(CommandForm)
        case expose([String])
        case volume([String])
        case shell([String])
        case stopSignal(String)
        /// HEALTHCHECK: the check the image config carries (test `["NONE"]` for `HEALTHCHECK NONE`).
        case healthcheck(HealthCheck)
        /// ONBUILD: a trigger recorded in the image config, as written after ONBUILD.
        case onBuild(String)

        /// True for steps that change files (a layer / an overlay); the others change only
        /// the image configuration (`empty_layer` in the history).
        public var changesFiles: Bool {
            switch self {
            case .run, .copy, .add: return true
            default: return false
            }
        }
    }

    public var instruction: Instruction
    public var target: StepTarget
    public var location: SourceLocation
    /// The instruction as written (continuations joined), for the image history.
    public var text: String
    /// The build variables (ARG) and environment (ENV) in force when the step runs, in the order
    /// they were set: what the step sees, and part of its cache key.
    public var environment: [KeyValue]
    public var buildArgs: [KeyValue]
    /// `RUN --network=`: `default` is the build's `--network` (the host's unless it says none).
    public var network: Network = .default
    /// The flags as written (`--chown=1:1`, `--link` as `link=true`), for `imgbench plan`.
    public var flags: [String: String] = [:]
    /// The here-documents of a RUN, COPY or ADD, in order (a RUN's are already in its script).
    public var heredocs: [Heredoc] = []
    /// What a COPY or ADD writes from its here-documents, after its context sources.
    public var inlineFiles: [InlineFile] = []
    /// `RUN --mount=`: what is mounted while the step runs.
    public var mounts: [RunMount] = []
    /// `COPY --from=STAGE`: the index of the earlier stage (in `Recipe.stages`) the sources are in.
    public var copyFrom: Int?
    /// `COPY --from=IMAGE` (a name no earlier stage has): the image the sources are in.
    public var copyFromImage: ImageSource?
    /// The stage the step is written in (its index in `Recipe.stages`).
    public var stage = 0

    /// An ADD's sources that are fetched (URLs, git repositories), not read from the context.
    public var remoteSources: [String] {
        guard case let .add(srcs, _, _, _) = instruction else { return [] }
        return srcs.filter { RemoteSource($0) != nil }
    }

    /// The earlier stages the step reads: COPY --from's, and RUN --mount=type=bind,from='s.
    public var stagesRead: [Int] { (copyFrom.map { [$0] } ?? []) + mounts.compactMap(\.from) }

    public enum Network: String, Sendable, Equatable {
        case `default`
        case none
        case host
    }

    public init(instruction: Instruction, target: StepTarget, location: SourceLocation, text: String,
                environment: [KeyValue], buildArgs: [KeyValue]) {
        self.instruction = instruction
        self.target = target
        self.location = location
        self.text = text
        self.environment = environment
        self.buildArgs = buildArgs
    }
}

public struct KeyValue: Equatable, Sendable, Hashable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// How the VM disk is made; set by parser directives at the top of the recipe, for example
/// `# vm-size=4G`, `# vm-filesystem=ext4`, `# vm-boot=kernel|firmware`, `# vm-kernel=image|host`.
public struct VMSettings: Equatable, Sendable {
    public enum Boot: String, Equatable, Sendable, CaseIterable {
        /// A filesystem-only disk booted with the image's own kernel and initramfs, given to qemu.
        case kernel
        /// A GPT disk (BIOS boot partition, EFI system partition, ext4 root) with GRUB for BIOS
        /// and UEFI and systemd as init: it boots on its own under OVMF or SeaBIOS.
        case firmware
    }

    /// The smallest disk `vm-boot=firmware` takes.
    public static let firmwareMinimumSize: UInt64 = 512 << 20

    /// Where the kernel the disk boots with comes from.
    public enum Kernel: String, Equatable, Sendable, CaseIterable {
        /// Debian's linux-image-amd64, installed into the image by the finalisation when the image
        /// has no kernel of its own.
        case image
        /// The build host's Debian kernel and initramfs from /boot, beside the disk: nothing is
        /// installed into the image (fast; for tests and images that only need to start).
        case host
    }

    public var size: UInt64 = 4 << 30
    public var kernel = Kernel.image
    public var filesystem = "ext4"
    public var boot = Boot.kernel
    public var clusterSize = 65536

    public init() {}
}

/// A here-document of the recipe (`<<EOF` ... `EOF`), as BuildKit reads one.
public struct Heredoc: Equatable, Sendable {
    /// The delimiter without quotes; for COPY it names the file.
    public var name: String
    /// The lines up to the delimiter, each with its line end; leading tabs stripped for `<<-`.
    public var content: String
    /// False when the delimiter is quoted (`<<'EOF'`, `<<"EOF"`): ARG/ENV are not expanded.
    public var expand: Bool
    /// `<<-`: leading tabs are stripped from the lines and the delimiter.
    public var chomp: Bool

    public init(name: String, content: String, expand: Bool, chomp: Bool) {
        self.name = name
        self.content = content
        self.expand = expand
        self.chomp = chomp
    }
}

/// A file a COPY or ADD writes from a here-document: its name (the delimiter) and content.
public struct InlineFile: Equatable, Sendable {
    public var name: String
    public var content: String

    public init(name: String, content: String) {
        self.name = name
        self.content = content
    }
}

/// An ADD source that is not in the build context: a file at an http(s) URL, or a git repository
/// (`https://HOST/REPO.git[#REF]`, `git@HOST:REPO[#REF]`, `git://HOST/REPO[#REF]`), as BuildKit
/// tells them apart.
public enum RemoteSource: Equatable, Sendable {
    case http(String)
    case git(repository: String, ref: String?)

    /// The remote source `source` names, nil for a context path.
    public init?(_ source: String) {
        let lower = source.lowercased()
        let (base, fragment) = source.firstIndex(of: "#").map { (String(source[..<$0]), String(source[source.index(after: $0)...])) } ?? (source, nil)
        if lower.hasPrefix("git@") || lower.hasPrefix("git://") || lower.hasPrefix("ssh://")
            || ((lower.hasPrefix("https://") || lower.hasPrefix("http://")) && base.lowercased().hasSuffix(".git")) {
            self = .git(repository: base, ref: fragment.flatMap { $0.isEmpty ? nil : String($0.prefix { $0 != ":" }) })
        } else if lower.hasPrefix("https://") || lower.hasPrefix("http://") {
            self = .http(source)
        } else {
            return nil
        }
    }

    /// The file name an http source gets in a folder destination: the URL path's last part.
    public var fileName: String {
        guard case let .http(url) = self else { return "" }
        let path = url.split(separator: "?", maxSplits: 1)[0].split(separator: "#", maxSplits: 1)[0]
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        return parts.count > 2 ? String(parts.last!) : "index.html"
    }
}

/// HEALTHCHECK as docker writes it into the image config: the test (`["NONE"]`,
/// `["CMD", ...]` or `["CMD-SHELL", "..."]`) and durations in nanoseconds (0: not set).
public struct HealthCheck: Equatable, Sendable {
    public var test: [String]
    public var interval: Int64 = 0
    public var timeout: Int64 = 0
    public var startPeriod: Int64 = 0
    public var startInterval: Int64 = 0
    public var retries = 0

    public init(test: [String]) {
        self.test = test
    }
}
