import ArgumentParser
import ImageBuild

struct CacheVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every cache entry (records, layer blobs and VM links by digest); exit 1 listing the bad ones.",
        discussion: "Entries a running build holds are skipped. --repair removes what is bad or left by builds that did not finish; the next build makes it again.")

    @OptionGroup var folder: CacheFolderOption
    @Flag(help: "Remove the bad entries and leftovers.") var repair = false
    @Option(help: "table or json.") var format: OutputFormat = .table

    struct Result: Codable {
        var checked: Int
        var findings: [CacheInventory.Finding]
    }

    func run() throws {
        try reportingErrors {
            let (checked, findings) = folder.inventory.verify(repair: repair)
            switch format {
            case .json: printOut(try JSONOutput.string(Result(checked: checked, findings: findings)))
            case .table:
                printOut(findings.isEmpty ? "\(checked) entries and blobs checked: all usable"
                                          : findingsTable(findings) + "\n\n\(checked) checked, \(findings.count) bad")
            }
            if findings.contains(where: { !$0.removed }) { throw ExitCode(1) }
        }
    }
}
