import Foundation
import Host
import ImageBuild
import Layers
import OCI
import Registry

/// `imgbench pull REGISTRY/REPO:TAG DIR`: what `imgbench push` put there, back into an output
/// folder that `imgbench boot`, `run`, `measure` and `check` read as they read a build's:
///
/// ```
/// DIR/oci/                  the image, same manifest digest, tagged as the build tagged it
/// DIR/bundle/               the runtime bundle: the layers unpacked into rootfs/, config.json
/// DIR/vm/disk.qcow2         from the containerDisk image's /disk/NAME.qcow2
/// DIR/vm/boot/vmlinuz       from its /boot/ (and initrd.img)
/// DIR/report.json           the artifacts that refer to the image
/// DIR/handoff.json
/// ```
///
/// Not carried: the qcow2 chain (`vm/chain/`; `handoff.json` and `report.json` still name its
/// links, which are missing here, so `measure wasted` reports the OCI image only), the output
/// stamps (a later build into DIR writes the bundle and disk afresh). DIR is written as
/// `DIR.partial` and renamed when complete; an existing DIR is replaced only when it is empty or
/// an imgbench output.
public struct OutputPull: Sendable, Transfer {
    public var reference: ImageReference
    public var folder: String
    public var settings: TransferSettings

    public init(reference: ImageReference, folder: String, settings: TransferSettings = .init()) {
        self.reference = reference
        self.folder = folder
        self.settings = settings
    }

    public struct Result: Codable, Sendable {
        public var reference: String
        public var folder: String
        public var imageDigest: String
        public var vmDigest: String?
        public var seconds = 0.0
    }

    public func run() async throws -> Result {
        try Self.checkReplaceable(folder)
        let partial = folder + ".partial"
        try Self.checkReplaceable(partial)
        try? FileSystem.removeTree(partial)
        try FileSystem.makeDirectories(partial)
        let id = Cleanup.register("partial pull \(partial)") { try? FileSystem.removeTree(partial) }
        defer { Cleanup.run(id) }
        try OutputFolder.mark(partial)
        let result = try await RegistryClient.using(reference, options: settings.options) { client in
            try await pull(into: partial, client: client)
        }
        try swapIn(partial)
        return result
    }

    var repository: String { reference.repository }

    func pull(into partial: String, client: RegistryClient) async throws -> Result {
        let start = Date()
        let image = try await AttachedArtifact.image(reference, client: client)
        let (handoffData, annotations) = try await AttachedArtifact.file(ArtifactType.handoff, of: image, reference, client: client)
        let (reportData, _) = try await AttachedArtifact.file(ArtifactType.report, of: image, reference, client: client)
        let handoff = try decode(handoffData)
        var result = Result(reference: reference.description, folder: folder, imageDigest: image.digest.description)
        if let container = handoff.container {
            try await pullContainer(image, container, into: partial, client: client)
        }
        if let vm = handoff.vm {
            result.vmDigest = try await pullVM(vm, name: handoff.recipe.name, annotation: annotations[ArtifactType.vmManifestAnnotation],
                                               into: partial, client: client)
        }
        try reportData.write(to: URL(fileURLWithPath: "\(partial)/\(handoff.report)"))
        try handoffData.write(to: URL(fileURLWithPath: "\(partial)/\(Handoff.fileName)"))
        result.seconds = Date().timeIntervalSince(start)
        return result
    }

    func decode(_ data: Data) throws -> Handoff {
        do { return try JSONDecoder().decode(Handoff.self, from: data) } catch {
            throw RegistryError.invalidResponse(registry: reference.registry, repository: repository, operation: "read handoff.json",
                                                message: "not a hand-off manifest: \(error)")
        }
    }

    /// The OCI layout, then the runtime bundle from its layers and config.
    func pullContainer(_ image: RemoteManifest, _ container: Handoff.Container, into partial: String, client: RegistryClient) async throws {
        note?("container image \(image.digest)")
        let layout = try ImageLayout.create(at: "\(partial)/\(container.ociLayout)")
        try await client.pullImage(repository, image, into: layout, tag: container.imageReference, progress: progress)
        note?("runtime bundle")
        let img = try layout.image(tag: container.imageReference)
        let bundle = "\(partial)/\(container.bundle)"
        try FileSystem.makeDirectories(bundle, mode: 0o700)
        try FileSystem.makeDirectories(bundle + "/rootfs")
        try Self.unpack(img.manifest.layers.map { layout.blobs.path(of: $0.digest) }, into: bundle + "/rootfs")
        try RuntimeBundle.writeConfig(at: bundle, config: img.config.config ?? ContainerConfig(), hostname: container.imageReference)
    }

    /// The containerDisk image (by the digest the hand-off artifact names, else by the `-vm`
    /// tag), unpacked, its disk and boot files moved to where the hand-off says they are.
    func pullVM(_ vm: Handoff.VM, name: String, annotation: String?, into partial: String, client: RegistryClient) async throws -> String {
        let ref = annotation ?? (reference.tag ?? "latest") + vmTagSuffix
        guard let remote = try await client.manifest(repository, reference: ref) else {
            throw RegistryError.notFound(registry: reference.registry, repository: repository, what: "containerDisk manifest \(ref)")
        }
        note?("VM disk from containerDisk \(remote.digest)")
        let scratch = "\(partial)/.containerdisk"
        let layout = try ImageLayout.create(at: scratch + "/oci")
        try await client.pullImage(repository, remote, into: layout, tag: "vm", progress: progress)
        let img = try layout.image(tag: "vm")
        try FileSystem.makeDirectories(scratch + "/root", mode: 0o700)
        try Self.unpack(img.manifest.layers.map { layout.blobs.path(of: $0.digest) }, into: scratch + "/root")
        try place(scratch + "/root/" + ContainerDisk.diskPath(name: name), at: "\(partial)/\(vm.disk)")
        try place(scratch + "/root/\(ContainerDisk.bootFolder)/vmlinuz", at: "\(partial)/\(vm.boot.kernel)")
        if let initrd = vm.boot.initrd { try place(scratch + "/root/\(ContainerDisk.bootFolder)/initrd.img", at: "\(partial)/\(initrd)") }
        try FileSystem.removeTree(scratch)
        return remote.digest.description
    }

    /// Applies layer files in order. Ctrl-C stops the apply (between two entries) before the
    /// partial folder is removed, so nothing is written into it while it goes.
    static func unpack(_ layers: [String], into root: String) throws {
        let stop = StopFlag()
        let finished = DispatchSemaphore(value: 0)
        let id = Cleanup.register("unpacking into \(root)") {
            stop.set()
            _ = finished.wait(timeout: .now() + 30)
        }
        defer {
            finished.signal()
            Cleanup.unregister(id)
        }
        for layer in layers {
            try LayerApply.apply(layer: layer, to: root, stop: { stop.isSet })
        }
    }

    func place(_ from: String, at to: String) throws {
        guard FileSystem.exists(from) else {
            throw RegistryError.invalidResponse(registry: reference.registry, repository: repository, operation: "unpack the containerDisk",
                                                message: "it has no /\(from.components(separatedBy: "/root/").last ?? from)")
        }
        try FileSystem.makeDirectories((to as NSString).deletingLastPathComponent)
        guard rename(from, to) == 0 else { throw HostError.systemCall(path: to, operation: "rename", errno: errno) }
        chown(to, 0, 0)
    }

    /// DIR may be replaced when it is missing, empty, or an imgbench output.
    static func checkReplaceable(_ path: String) throws {
        guard let st = try FileSystem.lstatIfExists(path) else { return }
        guard st.isDirectory, try FileSystem.children(path).isEmpty || OutputFolder.isOutput(path) else {
            throw HostError.io(path: path, message: "exists and is not an empty folder or an imgbench output; pull into another folder")
        }
    }

    func swapIn(_ partial: String) throws {
        let old = folder + ".old"
        try? FileSystem.removeTree(old)
        if FileSystem.exists(folder) { try FileManager.default.moveItem(atPath: folder, toPath: old) }
        try FileManager.default.moveItem(atPath: partial, toPath: folder)
        try? FileSystem.removeTree(old)
    }
}
