import ArgumentParser
import Foundation
import Host

/// The imgbench command line. The executable only calls `IMGBench.main()`; every command lives
/// here so that tests can run them.
/// Async because push and pull are.
public struct IMGBench: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "imgbench",
        abstract: "Build one recipe into a layered OCI image and a qcow2 VM disk, and measure what each costs.",
        version: Provenance.versionLine,
        subcommands: [BuildCommand.self, PlanCommand.self, BootCommand.self, RunCommand.self, MeasureCommand.self, ReportCommand.self, CheckCommand.self, DiffCommand.self, VerifyReproCommand.self,
                      PushCommand.self, PullCommand.self,
                      Qcow.self, LayersCommand.self, OCICommand.self, DriversCommand.self, CacheCommand.self])

    public init() {}

    /// The entry point: parses the command line and runs the command, async ones awaited. (From
    /// top-level code, `main()` resolves to the parser's synchronous entry point, which refuses
    /// an async root.)
    public static func start() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// `--format table|json` for commands that report.
public enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table, json
}

/// `--progress auto|plain|tty|quiet`, as buildx reads it: auto is a live display on a terminal
/// and plain lines otherwise, tty the live display, quiet (or none, the older spelling) nothing.
public enum ProgressMode: String, ExpressibleByArgument, CaseIterable, Sendable {
    case auto, plain, tty, quiet, none

    var isQuiet: Bool { self == .quiet || self == .none }

    /// Whether progress is drawn in place (a terminal's live display) rather than as lines.
    var isLive: Bool { self == .tty || (self == .auto && isatty(STDERR_FILENO) == 1) }
}
