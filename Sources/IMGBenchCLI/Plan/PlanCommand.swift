import ArgumentParser
import Foundation
import ImageBuild
import RecipePlan

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show a recipe's plan: its stage and steps as parsed, each step's cache key and whether each side's cache holds it.",
        discussion: """
            Runs nothing and needs none of the build context's files: a COPY or ADD source that \
            matches no file is shown, not refused, so it also serves as a linter. \
            Exit status: 0 the recipe is accepted, 2 it is not (file:line:column: why).
            """)

    @Argument(help: "A recipe folder holding a Containerfile, or a recipe file; with -f, the build context folder.", transform: absolutePath)
    var recipe: String
    @Option(name: .shortAndLong, help: "The recipe file, when it is not the context folder's Containerfile or Dockerfile.", transform: absolutePath)
    var file: String?
    @Option(name: .customLong("build-arg"), help: "KEY=VALUE for an ARG, or KEY to take its value from the environment; may repeat.")
    var buildArgs: [String] = []
    @Option(help: "Cache folder to look in (default $XDG_CACHE_HOME/imgbench or ~/.cache/imgbench).", transform: absolutePath)
    var cache: String?
    @Option(help: "The stage to build, by name or number (default the last).") var target: String?
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        try BuildRunning.validate(buildArgs: buildArgs)
    }

    func run() throws {
        let (_, parsed) = try BuildRunning.select(nil, target: target, recipe: try BuildRunning.load(recipe, file: file, buildArgs: BuildRunning.buildArgs(buildArgs)))
        let preview: PlanPreview
        do {
            preview = try PlanPreview.make(parsed, cache: cache ?? absolutePath(BuildOptions.defaultCache),
                                           sourceDateEpoch: ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"].flatMap(Int.init))
        } catch let e as RecipeError {
            printErr("imgbench: error: \(e)")
            throw ExitCode(2)
        }
        let document = PlanDocument(parsed, preview: preview)
        switch format {
        case .json: printOut(try JSONOutput.string(document))
        case .table: printOut(document.table())
        }
    }
}
