import ArgumentParser

/// `imgbench oci …`: OCI image layouts on the command line.
public struct OCICommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "oci",
        abstract: "List and inspect the images of an OCI image layout.",
        subcommands: [OCIList.self, OCIInspect.self])

    public init() {}
}
