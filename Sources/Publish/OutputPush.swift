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

    /// The image's blobs, the containerDisk's and the artifacts go up at the same time: the
    /// artifacts' subject is the image manifest, whose digest is known before it is pushed, and
    /// the hand-off's needs only the containerDisk's digest, known once its layout is written.
    func push(_ handoff: Handoff, _ container: Handoff.Container, dir: String, client: RegistryClient) async throws -> Result {
        let start = Date()
        let layout = try ImageLayout(opening: "\(dir)/\(container.ociLayout)")
        let image = try layout.resolve(tag: container.imageReference)
        note?("container image \(image.digest)")
        var result = Result(reference: reference.description, imageDigest: image.digest.description)
        async let imageBlobs = client.pushImage(layout, manifest: image, to: repository, mountFrom: settings.mountFrom, progress: progress)

        var vm: (data: Data, descriptor: Descriptor)?
        var vmBlobs: [BlobOutcome] = []
        if let disk = handoff.vm {
            let scratch = try Self.scratchFolder(beside: dir)
            let id = Cleanup.register("push scratch \(scratch)") { try? FileSystem.removeTree(scratch) }
            defer { Cleanup.run(id) }
            let (vmLayout, d) = try makeContainerDisk(handoff, disk, dir: dir, scratch: scratch)
            async let blobs = client.pushImage(vmLayout, manifest: d, to: repository, mountFrom: settings.mountFrom, progress: progress)
            vm = (try vmLayout.blobs.read(d), d)
            result.artifacts = try await pushArtifacts(handoff, dir: dir, image: image, vm: d, client: client)
            vmBlobs = try await blobs
            result.vmReference = reference.tagged(tag + vmTagSuffix).description
            result.vmDigest = d.digest.description
        } else {
            result.artifacts = try await pushArtifacts(handoff, dir: dir, image: image, vm: nil, client: client)
        }
        count(try await imageBlobs + vmBlobs, into: &result)
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

    /// The VM disk as a containerDisk image, written into a layout in `scratch`.
    func makeContainerDisk(_ handoff: Handoff, _ vm: Handoff.VM, dir: String, scratch: String) throws -> (ImageLayout, Descriptor) {
        note?("VM disk as a KubeVirt containerDisk (/\(ContainerDisk.diskPath(name: handoff.recipe.name)))")
        let files = ContainerDisk.Files(disk: "\(dir)/\(vm.disk)", kernel: "\(dir)/\(vm.boot.kernel)",
                                        initrd: vm.boot.initrd.map { "\(dir)/\($0)" }, name: handoff.recipe.name)
        let layout = try ImageLayout.create(at: scratch + "/oci")
        return (layout, try ContainerDisk.write(files, into: layout, tag: "vm", progress: diskProgress))
    }

    /// A new folder beside the output folder (the same filesystem as its disk), only root's.
    static func scratchFolder(beside dir: String) throws -> String {
        let url = URL(fileURLWithPath: dir).standardized
        return try TemporaryFolder.make(prefix: ".\(url.lastPathComponent).push", in: url.deletingLastPathComponent().path)
    }

    /// report.json and handoff.json as artifacts referring to the image; their manifest
    /// digests by artifact type.
    func pushArtifacts(_ handoff: Handoff, dir: String, image: Descriptor, vm: Descriptor?,
                       client: RegistryClient) async throws -> [String: String] {
        let created = ISO8601DateFormatter().string(from: Date())
        var vmAnnotation: [String: String] = [:]
        if let vm { vmAnnotation[ArtifactType.vmManifestAnnotation] = vm.digest.description }
        var files: [RegistryClient.ArtifactFile] = []
        for (file, type, extra) in [(handoff.report, ArtifactType.report, [:]), (Handoff.fileName, ArtifactType.handoff, vmAnnotation)] {
            let path = "\(dir)/\(file)"
            guard let data = FileManager.default.contents(atPath: path) else {
                throw HostError.io(path: path, message: "cannot read it")
            }
            note?("artifact \((file as NSString).lastPathComponent) referring to \(image.digest)")
            files.append(.init(data: data, name: (file as NSString).lastPathComponent, fileType: "application/json", artifactType: type,
                               annotations: extra.merging([AnnotationKey.created: created]) { a, _ in a }))
        }
        let pushed = try await client.pushArtifacts(repository, files, subject: image)
        return Dictionary(uniqueKeysWithValues: zip(files.map(\.artifactType), pushed.map(\.digest.description)))
    }
}
