import ArgumentParser
import ImageBuild

/// `imgbench cache …`: what the build cache holds, checked, and pruned, while builds may run.
public struct CacheCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Show what the build cache holds, check every entry's digest, remove unused entries.",
        discussion: """
            Safe while builds run: an entry is checked or removed only under its lock, which a build \
            holds while it makes or uses the entry (README, Reliability).
            """,
        subcommands: [CacheDu.self, CacheVerify.self, CachePrune.self])

    public init() {}
}

/// `--cache DIR`, shared by the cache commands.
struct CacheFolderOption: ParsableArguments {
    @Option(help: "Cache folder (default $XDG_CACHE_HOME/imgbench or ~/.cache/imgbench).") var cache: String?

    var inventory: CacheInventory { CacheInventory(root: cache ?? BuildOptions.defaultCache) }
}

/// Findings as a table: the entry, what is wrong with it, whether it was removed.
func findingsTable(_ findings: [CacheInventory.Finding]) -> String {
    var t = TextTable(header: ["entry", "problem", "removed"])
    t.rows = findings.map { [$0.name, $0.problem, $0.removed ? "yes" : "no"] }
    return t.render()
}
