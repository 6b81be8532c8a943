import Foundation

/// Parses a Containerfile into a `Recipe`, as BuildKit's Dockerfile frontend reads it.
///
/// Accepted: FROM (several: stages, `AS NAME`, `--platform` of the host), RUN (`--mount=type=bind|
/// cache|tmpfs|secret`), COPY (`--from=STAGE`, `--chown`, `--chmod`, `--link`), ADD (local sources),
/// ENV, ARG (also before FROM), WORKDIR, USER, LABEL, CMD, ENTRYPOINT, EXPOSE, VOLUME, SHELL,
/// STOPSIGNAL, HEALTHCHECK, ONBUILD and MAINTAINER (as a label); here-documents for RUN, COPY and
/// ADD; line continuations (the escape character, `\` or as the `escape` directive says),
/// comments, parser directives, shell and exec (JSON) forms, and ARG/ENV substitution (`$V`,
/// `${V}`, `${V:-word}`, `${V:+word}`, `${V-word}`, `${V+word}`, `${V:?message}`) in the
/// instructions where Containerfiles substitute.
///
/// imgbench's own spellings, which a Containerfile reader ignores or recognises:
/// - parser directives at the top: `# vm-size=4G`, `# vm-filesystem=ext4`, `# vm-boot=kernel`, `# vm-kernel=image|host`,
///   `# vm-cluster-size=64K`, `# base-variant=minbase`, `# workloads=sysbench-cpu,fio-randrw` (the runtime
///   workloads the image carries, named in the hand-off manifest);
/// - `# imgbench: target=container|vm|both network=...` on the line before a step (a comment to
///   docker), or the older `--target=` and `--network=` flags on RUN, COPY and ADD.
public struct RecipeParser {
    public var file: String
    /// Values for ARG, as `--build-arg` gives them.
    public var buildArgs: [String: String]
    public var limits: RecipeLimits
    /// The ONBUILD triggers of each stage's base image, by stage index: they run right after the
    /// stage's FROM, as docker runs them (`Builder` reads them from the image's config).
    public var triggers: [Int: [String]] = [:]

    public init(file: String, buildArgs: [String: String] = [:], limits: RecipeLimits = .standard) {
        self.file = file
        self.buildArgs = buildArgs
        self.limits = limits
    }

    /// Reads and parses a recipe folder (holding `Containerfile` or `Dockerfile`) or a recipe file;
    /// with `file` (`-f`), that file is the recipe and `path` the build context folder, as in docker.
    public static func load(_ path: String, file recipeFile: String? = nil, buildArgs: [String: String] = [:]) throws -> Recipe {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw RecipeError(SourceLocation(file: path, line: 0, column: 0), "no such recipe folder or file")
        }
        if let recipeFile {
            guard isDir.boolValue else { throw RecipeError(SourceLocation(file: path, line: 0, column: 0), "with -f FILE, the build context must be a folder") }
            var recipe = try parse(file: recipeFile, buildArgs: buildArgs)
            recipe.context = path
            recipe.name = RecipeParser.recipeName(folder: path)
            return recipe
        }
        var file = path
        if isDir.boolValue {
            let names = ["Containerfile", "Dockerfile"]
            guard let found = names.map({ (path as NSString).appendingPathComponent($0) })
                .first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw RecipeError(SourceLocation(file: path, line: 0, column: 0), "the recipe folder holds no Containerfile or Dockerfile")
            }
            file = found
        }
        var recipe = try parse(file: file, buildArgs: buildArgs)
        let folder = (file as NSString).deletingLastPathComponent
        recipe.context = folder.isEmpty ? "." : folder
        recipe.name = RecipeParser.recipeName(folder: recipe.context)
        return recipe
    }

    /// Reads and parses one recipe file.
    static func parse(file: String, buildArgs: [String: String]) throws -> Recipe {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw RecipeError(SourceLocation(file: file, line: 0, column: 0), "cannot read the recipe file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RecipeError(SourceLocation(file: file, line: 1, column: 1), "the recipe file is not UTF-8 text")
        }
        return try RecipeParser(file: file, buildArgs: buildArgs).parse(text)
    }

    /// A recipe's name: its folder's name, lowercased, as an image reference allows.
    static func recipeName(folder: String) -> String {
        let base = (URL(fileURLWithPath: folder).standardizedFileURL.lastPathComponent).lowercased()
        let cleaned = base.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "-" }
        return String(cleaned).isEmpty ? "recipe" : String(cleaned)
    }

    /// A logical line read as an instruction: its keyword, and its arguments with where they
    /// start in the line.
    struct InstructionLine {
        var line: LogicalLine
        var keyword: String
        var args: String
        var argsOffset: Int
        /// Where the keyword stands: the instruction's place.
        var location: SourceLocation

        var upper: String { keyword.uppercased() }
    }

    func instruction(_ l: LogicalLine) -> InstructionLine {
        let s = l.string
        let leading = s.prefix { $0 == " " || $0 == "\t" }.count
        let rest = s.dropFirst(leading)
        let keyword = String(rest.prefix { !$0.isWhitespace })
        let argsStart = leading + keyword.count + rest.dropFirst(keyword.count).prefix { $0.isWhitespace }.count
        return InstructionLine(line: l, keyword: keyword, args: String(s.dropFirst(argsStart)), argsOffset: argsStart,
                               location: location(l, leading))
    }

    /// An ONBUILD trigger of the stage's base image as a step, placed (and refused) at the FROM.
    func trigger(_ text: String, from: FromLine, state: inout State) throws -> Step {
        var l = LogicalLine()
        l.text = Array(text)
        l.positions = Array(repeating: (from.location.line, from.location.column), count: l.text.count)
        l.startLine = from.location.line
        let i = instruction(l)
        let keyword = i.upper
        guard RecipeParser.instructionNames.contains(keyword) else {
            throw RecipeError(from.location, "the ONBUILD trigger '\(text)' of \(from.reference) is not an instruction a trigger may be")
        }
        do {
            return try parseStep(i, state: &state)
        } catch let e as RecipeError {
            throw RecipeError(from.location, "the ONBUILD trigger '\(text)' of \(from.reference): \(e.message)")
        }
    }

    /// One stage: its FROM and its steps.
    struct StageLines {
        var from: FromLine
        var steps: [Step] = []
    }

    /// The ARGs before the first FROM, then the stages: a FROM and a step an instruction, within
    /// the limits.
    func instructions(_ lines: [LogicalLine], state: inout State) throws -> [StageLines] {
        var stages: [StageLines] = []
        var count = 0, recorded = 0
        for l in lines {
            let i = instruction(l)
            if stages.isEmpty || i.upper == "FROM" {
                if let from = try parseBeforeFrom(i, state: &state) {
                    stages.append(StageLines(from: from))
                    for t in triggers[stages.count - 1] ?? [] { stages[stages.count - 1].steps.append(try trigger(t, from: from, state: &state)) }
                }
                continue
            }
            guard count < limits.instructions else {
                throw RecipeError(i.location, "more than \(limits.instructions) instructions: more than a recipe can have")
            }
            stages[stages.count - 1].steps.append(try parseStep(i, state: &state))
            count += 1
            recorded += state.env.count + state.args.count
            guard recorded <= limits.recordedVariables else {
                throw RecipeError(i.location, "the steps so far record more than \(limits.recordedVariables) ENV and ARG values (each step records every one in force)")
            }
        }
        return stages
    }

    /// Directives, logical lines, FROM (and the ARGs before it), then a step an instruction.
    public func parse(_ text: String) throws -> Recipe {
        let physical = RecipeParser.physicalLines(text)
        try refuseLongLines(physical)
        let (directives, next) = try parseDirectives(physical)
        let lines = try logicalLines(physical, from: next, escape: directives.escape)
        var state = State(buildArgs: buildArgs, escape: directives.escape, limits: limits)
        let stages = try instructions(lines, state: &state)
        guard !stages.isEmpty else {
            throw RecipeError(SourceLocation(file: file, line: max(1, physical.count), column: 1), "the recipe has no FROM")
        }
        let folder = (file as NSString).deletingLastPathComponent
        var recipes: [Recipe] = []
        for stage in stages {
            var r = Recipe(name: RecipeParser.recipeName(folder: folder), file: file, context: folder, vm: directives.vm,
                           base: stage.from.base.with(variant: directives.variant), baseLocation: stage.from.location,
                           steps: stage.steps, declaredWorkloads: directives.workloads, globalArgs: state.globalDeclared,
                           baseReference: stage.from.reference, stageName: stage.from.stageName)
            // FROM STAGE: that stage's base (an earlier one, so resolved already), then its steps.
            if let p = stage.from.parentStage {
                let parent = recipes[p]
                (r.base, r.baseReference, r.parentStage) = (parent.base, parent.baseReference, p)
                (r.steps, r.inheritedSteps) = (parent.steps + r.steps, parent.steps.count)
            }
            recipes.append(r)
        }
        var recipe = recipes[recipes.count - 1]
        (recipe.stages, recipe.stageIndex) = (recipes, recipes.count - 1)
        return recipe
    }
}
