import ArgumentParser
import Foundation
import Publish
import Registry

/// `imgbench push out/NAME REGISTRY/REPO:TAG`.
struct PushCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Push a build's outputs to an OCI registry: the image, the VM disk as a KubeVirt containerDisk, the report and hand-off as artifacts.",
        discussion: """
            The container image goes up as built (the same manifest digest as out/NAME/oci); the VM \
            disk as a KubeVirt containerDisk image (/disk/NAME.qcow2 owned 107:107, the kernel and \
            initramfs in /boot/) tagged TAG-vm; report.json and handoff.json as OCI artifacts whose \
            subject is the image (the referrers API, or the sha256-HEX referrers tag where the \
            registry has none). TAG is written last: a push that fails leaves it as it was. \
            Credentials come from $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json or \
            ~/.docker/config.json.
            """)

    @Argument(help: "A build's output folder (out/NAME).", transform: absolutePath) var output: String
    @Argument(help: "REGISTRY/REPOSITORY:TAG") var reference: String
    @OptionGroup var registry: RegistryFlags
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws { _ = try parseReference(reference) }

    func run() async throws {
        var push = OutputPush(folder: output, reference: try parseReference(reference), settings: registry.settings("push"))
        if !registry.progress.isQuiet {
            let bar = TerminalProgress(label: "containerDisk tar", mode: registry.progress)
            push.diskProgress = { done, total in bar.update(done, total) }
        }
        let result = try await reportingRegistryErrors { try await push.run() }
        switch format {
        case .json: printOut(try JSONOutput.string(result))
        case .table:
            printOut("pushed \(result.reference) \(result.imageDigest)")
            if let v = result.vmReference, let d = result.vmDigest { printOut("pushed \(v) \(d) (KubeVirt containerDisk)") }
            for (type, digest) in result.artifacts.sorted(by: { $0.key < $1.key }) { printOut("artifact \(type) \(digest)") }
            let blobs = result.blobs.sorted(by: { $0.key < $1.key }).map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            printOut("blobs: \(blobs); " + String(format: "%.1f s", result.seconds))
        }
    }
}
