import ArgumentParser
import ImageBuild

struct CachePrune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove cache entries not used for --keep-days days, what dead builds left, and unreferenced blobs.",
        discussion: "An entry a running build makes or uses is kept, and so is every entry a kept one is made on. The package cache's files go when no build has been served them for --keep-days days.")

    @OptionGroup var folder: CacheFolderOption
    @Option(help: "Keep entries used within this many days (0: remove every entry no build holds now).") var keepDays = 30
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        guard keepDays >= 0 else { throw ValidationError("--keep-days must be 0 or more, got \(keepDays)") }
    }

    func run() throws {
        try reportingErrors {
            let removed = folder.inventory.prune(keepDays: keepDays)
            switch format {
            case .json: printOut(try JSONOutput.string(removed))
            case .table: printOut(removed.isEmpty ? "nothing to remove" : findingsTable(removed) + "\n\n\(removed.count) removed")
            }
        }
    }
}
