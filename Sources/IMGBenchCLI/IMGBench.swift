import ArgumentParser

/// The imgbench command line. The executable only calls `IMGBench.main()`; every command lives
/// here so that tests can run them.
public struct IMGBench: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "imgbench",
        abstract: "Build one recipe into a layered OCI image and a qcow2 VM disk, and measure what each costs.",
        subcommands: [BuildCommand.self, BootCommand.self, RunCommand.self, MeasureCommand.self, ReportCommand.self, CheckCommand.self, VerifyReproCommand.self,
                      Qcow.self, LayersCommand.self, OCICommand.self, DriversCommand.self, CacheCommand.self])

    public init() {}
}

/// `--format table|json` for commands that report.
public enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table, json
}

/// `--progress auto|plain|none`: auto draws on a terminal and stays quiet otherwise.
public enum ProgressMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    case auto, plain, none
}
