import ArgumentParser
import Foundation
import Publish
import Registry

/// `imgbench pull REGISTRY/REPO:TAG DIR`.
struct PullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Pull what imgbench push put in a registry back into an output folder that boot, run, measure and check read.",
        discussion: """
            DIR gets oci/ (the same manifest digest), bundle/ (the layers unpacked, config.json), \
            vm/disk.qcow2 and vm/boot/ (from the containerDisk image), report.json and handoff.json. \
            Not carried: the qcow2 chain (vm/chain/) and the output stamps. DIR must be missing, \
            empty or an imgbench output; it is written as DIR.partial and renamed when complete.
            """)

    @Argument(help: "REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:...") var reference: String
    @Argument(help: "The folder to write (out/NAME).", transform: absolutePath) var output: String
    @OptionGroup var registry: RegistryFlags
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws { _ = try parseReference(reference) }

    func run() async throws {
        let pull = OutputPull(reference: try parseReference(reference), folder: output, settings: registry.settings("pull"))
        let result = try await reportingRegistryErrors { try await pull.run() }
        switch format {
        case .json: printOut(try JSONOutput.string(result))
        case .table:
            printOut("pulled \(result.reference) \(result.imageDigest) into \(result.folder)"
                + (result.vmDigest.map { "; VM disk from \($0)" } ?? "") + String(format: " (%.1f s)", result.seconds))
        }
    }
}
