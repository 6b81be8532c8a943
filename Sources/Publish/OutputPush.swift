import Foundation
import Host
import ImageBuild
import OCI
import Registry

/// The artifact types of the files that travel beside the images (image-spec 1.1 artifacts).
public enum ArtifactType {
    public static let report = "application/vnd.imgbench.report.v1+json"
    public static let handoff = "application/vnd.imgbench.handoff.v1+json"
    /// On the hand-off artifact: the digest of the containerDisk image it goes with.
    public static let vmManifestAnnotation = "dev.imgbench.vm.manifest"
}

/// `imgbench push out/NAME REGISTRY/REPO:TAG`: a build's outputs into one repository.
///
/// - the container image as built: its blobs, then its manifest by digest, byte for byte (the
///   registry holds the same manifest digest as `out/NAME/oci`);
/// - the VM disk as a KubeVirt containerDisk image (`ContainerDisk`), tagged `TAG` + `-vm`;
/// - `report.json` and `handoff.json` as artifacts whose `subject` is the image manifest,
///   listed by the referrers API where the registry has one, else under the referrers tag;
/// - then the tags: `TAG-vm`, and `TAG` last, so a push that fails leaves `TAG` as it was.
///
/// Not pushed: the qcow2 chain (`vm/chain/`, hard links into the build cache; the flattened
/// disk stands for it), the output stamps.
public struct OutputPush: Sendable, Transfer {
    public var folder: String
    public var reference: ImageReference
    public var settings: TransferSettings
    /// Told, as the containerDisk's tar is written, the disk bytes done and in all.
    public var diskProgress: (@Sendable (UInt64, UInt64) -> Void)?

    public init(folder: String, reference: ImageReference, settings: TransferSettings = .init()) {
        self.folder = folder
        self.reference = reference
        self.settings = settings
    }

    /// What a push did.
    public struct Result: Codable, Sendable {
        public var reference: String
        public var imageDigest: String
        public var vmReference: String?
        public var vmDigest: String?
        /// The artifacts' manifest digests, by artifact type.
        public var artifacts: [String: String] = [:]
        /// How each blob got there: `present`, `mounted`, `uploaded`, counted.
        public var blobs: [String: Int] = [:]
        public var seconds = 0.0
    }

    public func run() async throws -> Result {
        guard reference.digest == nil else {
            throw RegistryError.invalidReference(reference.description, reason: "push needs a tag, not a digest")
        }
        let (handoff, dir) = try Handoff.load(folder)
        guard let container = handoff.container else {
            throw HostError.io(path: dir, message: "has no container image (a --images vm build); push needs one to tag")
        }
        return try await RegistryClient.using(reference, options: settings.options) { client in
            try await push(handoff, container, dir: dir, client: client)
        }
    }

    var tag: String { reference.tag ?? "latest" }
    var repository: String { reference.repository }

    func push(_ handoff: Handoff, _ container: Handoff.Container, dir: String, client: RegistryClient) async throws -> Result {
        let start = Date()
        let layout = try ImageLayout(opening: "\(dir)/\(container.ociLayout)")
        let image = try layout.resolve(tag: container.imageReference)
        note?("container image \(image.digest)")
        var result = Result(reference: reference.description, imageDigest: image.digest.description)
        count(try await client.pushImage(layout, manifest: image, to: repository, mountFrom: settings.mountFrom, progress: progress), into: &result)
        let vm = try await pushVM(handoff, dir: dir, client: client, result: &result)
        try await pushArtifacts(handoff, dir: dir, image: image, vm: vm, client: client, result: &result)
        if let vm {
            note?("tag \(tag + vmTagSuffix)")
            try await client.putManifest(repository, reference: tag + vmTagSuffix, data: vm.data, mediaType: vm.descriptor.mediaType)
        }
        note?("tag \(tag)")
        try await client.putManifest(repository, reference: tag, data: try layout.blobs.read(image), mediaType: image.mediaType)
        result.seconds = Date().timeIntervalSince(start)
        return result
    }

    func count(_ outcomes: [BlobOutcome], into result: inout Result) {
        for o in outcomes { result.blobs[o.rawValue, default: 0] += 1 }
    }

    /// The containerDisk image, made in a scratch layout beside the output folder and pushed by
    /// digest; the scratch is removed however it ends.
    func pushVM(_ handoff: Handoff, dir: String, client: RegistryClient, result: inout Result) async throws -> (data: Data, descriptor: Descriptor)? {
        guard let vm = handoff.vm else { return nil }
        let scratch = try Self.scratchFolder(beside: dir)
        let id = Cleanup.register("push scratch \(scratch)") { try? FileSystem.removeTree(scratch) }
        defer { Cleanup.run(id) }
        note?("VM disk as a KubeVirt containerDisk (/\(ContainerDisk.diskPath(name: handoff.recipe.name)))")
        let files = ContainerDisk.Files(disk: "\(dir)/\(vm.disk)", kernel: "\(dir)/\(vm.boot.kernel)",
                                        initrd: vm.boot.initrd.map { "\(dir)/\($0)" }, name: handoff.recipe.name)
        let layout = try ImageLayout.create(at: scratch + "/oci")
        let d = try ContainerDisk.write(files, into: layout, tag: "vm", progress: diskProgress)
        count(try await client.pushImage(layout, manifest: d, to: repository, mountFrom: settings.mountFrom, progress: progress), into: &result)
        result.vmReference = reference.tagged(tag + vmTagSuffix).description
        result.vmDigest = d.digest.description
        return (try layout.blobs.read(d), d)
    }

    /// A new folder beside the output folder (the same filesystem as its disk), only root's.
    static func scratchFolder(beside dir: String) throws -> String {
        let url = URL(fileURLWithPath: dir).standardized
        return try TemporaryFolder.make(prefix: ".\(url.lastPathComponent).push", in: url.deletingLastPathComponent().path)
    }

    func pushArtifacts(_ handoff: Handoff, dir: String, image: Descriptor, vm: (data: Data, descriptor: Descriptor)?,
                       client: RegistryClient, result: inout Result) async throws {
        let created = ISO8601DateFormatter().string(from: Date())
        var vmAnnotation: [String: String] = [:]
        if let vm { vmAnnotation[ArtifactType.vmManifestAnnotation] = vm.descriptor.digest.description }
        for (file, type, extra) in [(handoff.report, ArtifactType.report, [:]), (Handoff.fileName, ArtifactType.handoff, vmAnnotation)] {
            let path = "\(dir)/\(file)"
            guard let data = FileManager.default.contents(atPath: path) else {
                throw HostError.io(path: path, message: "cannot read it")
            }
            note?("artifact \((file as NSString).lastPathComponent) referring to \(image.digest)")
            let d = try await client.pushArtifact(repository, file: data, name: (file as NSString).lastPathComponent,
                                                  fileType: "application/json", artifactType: type, subject: image,
                                                  annotations: extra.merging([AnnotationKey.created: created]) { a, _ in a })
            result.artifacts[type] = d.digest.description
        }
    }
}
