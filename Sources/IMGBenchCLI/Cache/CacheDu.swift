import ArgumentParser
import ImageBuild

struct CacheDu: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "du", abstract: "Bytes the cache holds per kind (bases, container layers, blobs, vm links, boot files, packages) and per recipe.")

    @OptionGroup var folder: CacheFolderOption
    @Option(help: "table or json.") var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            let usage = folder.inventory.usage()
            switch format {
            case .json: printOut(try JSONOutput.string(usage))
            case .table:
                var kinds = TextTable(header: ["kind", "entries", "allocated"])
                kinds.rows = usage.kinds.map { [$0.name, "\($0.entries)", ByteSize.format($0.bytes)] }
                var recipes = TextTable(header: ["recipe", "entries", "allocated"])
                recipes.rows = usage.recipes.map { [$0.name, "\($0.entries)", ByteSize.format($0.bytes)] }
                printOut([kinds.render(), "", recipes.render(), "",
                          "total \(ByteSize.format(usage.totalBytes)) allocated (an entry shared by recipes counts for each)"].joined(separator: "\n"))
            }
        }
    }
}
