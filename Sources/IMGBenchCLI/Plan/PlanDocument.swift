import Foundation
import ImageBuild
import RecipePlan

/// `imgbench plan`'s output: the ARGs before FROM, and the stage with its steps.
struct PlanDocument: Encodable {
    struct Arg: Encodable {
        var instruction = "ARG"
        var name: String
        var value: String?
        var line: Int
        var column: Int
    }

    struct Cache: Encodable {
        /// nil (left out) where the side does not build the step.
        var container: Bool?
        var vm: Bool?
    }

    struct StepEntry: Encodable {
        var index: Int
        /// The stage the step is written in; `inherited`: a step of the stage this one is built
        /// FROM, which it builds on (both images continue that stage's).
        var stage: Int
        var inherited: Bool
        var instruction: String
        var line: Int
        var column: Int
        var location: String
        var flags: [String: String]
        var arguments: [String]
        var heredocs: [String]
        var target: String
        var key: String
        var cache: Cache
        var sources: [String]
        var missing: [String]
    }

    struct Stage: Encodable {
        var name: String?
        var index: Int
        /// The stage built into the images (the last, or --target's).
        var target: Bool
        /// Whether a build of the target builds it.
        var built: Bool
        var from: String
        var base: String
        var line: Int
        var baseKey: String?
        var baseProblem: String?
        var cache: Cache
        var steps: [StepEntry]

        enum CodingKeys: String, CodingKey {
            case name, index, target, built, from, base, line, baseKey, baseProblem, cache, steps
        }

        /// `name` is written when the stage has none too (null), as the stages' shape has it.
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(index, forKey: .index)
            try c.encode(target, forKey: .target)
            try c.encode(built, forKey: .built)
            try c.encode(from, forKey: .from)
            try c.encode(base, forKey: .base)
            try c.encode(line, forKey: .line)
            try c.encodeIfPresent(baseKey, forKey: .baseKey)
            try c.encodeIfPresent(baseProblem, forKey: .baseProblem)
            try c.encode(cache, forKey: .cache)
            try c.encode(steps, forKey: .steps)
        }
    }

    var recipe: String
    var context: String
    var args: [Arg]
    var stages: [Stage]

    init(_ recipe: Recipe, preview: PlanPreview) {
        self.recipe = recipe.file
        context = recipe.context
        args = recipe.globalArgs.map { Arg(name: $0.name, value: $0.value, line: $0.location.line, column: $0.location.column) }
        let names = preview.stages.enumerated().map { i, s in s.recipe.stageName ?? String(i) }
        stages = preview.stages.enumerated().map { i, s in PlanDocument.stage(s, index: i, target: i == preview.target, names: names) }
    }

    /// `names`: every stage's name (its number when it has none), for a stage built FROM another.
    static func stage(_ s: PlanPreview.Stage, index: Int, target: Bool, names: [String]) -> Stage {
        let steps = zip(s.plan.steps, s.steps).map { p, hits in
            StepEntry(index: p.index, stage: p.step.stage, inherited: p.index <= s.recipe.inheritedSteps, instruction: String(p.step.text.prefix { $0 != " " }), line: p.step.location.line,
                      column: p.step.location.column, location: p.step.location.description, flags: p.step.flags,
                      arguments: PlanDocument.arguments(p.step), heredocs: p.step.heredocs.map(\.name), target: p.step.target.rawValue,
                      key: p.key, cache: Cache(container: hits.container, vm: hits.vm), sources: p.sources, missing: p.missing)
        }
        let parent = s.recipe.parentStage.map { names[$0] }
        return Stage(name: s.recipe.stageName, index: index, target: target, built: s.built, from: parent ?? s.recipe.baseReference,
                     base: (parent.map { "stage \($0), on " } ?? "") + PlanDocument.describe(s.recipe.base), line: s.recipe.baseLocation.line, baseKey: s.baseKey,
                     baseProblem: s.baseProblem, cache: Cache(container: s.base.container, vm: s.base.vm), steps: steps)
    }

    /// What the base is made from, as the build's report names it.
    static func describe(_ base: BaseImage) -> String {
        switch base {
        case let .debian(suite, variant, slim): return "debian:\(suite)\(slim ? "-slim" : "") \(variant) (mmdebstrap)"
        case .scratch: return "scratch"
        case let .ociLayout(path, tag): return "oci:\(path)" + (tag.map { ":" + $0 } ?? "")
        case let .registry(reference): return "\(reference) (registry)"
        case let .local(name): return "\(name) (local image store)"
        }
    }

    /// The instruction's arguments as parsed: substituted, flags apart, a COPY's here-documents
    /// as `<<NAME` before its destination.
    static func arguments(_ s: Step) -> [String] {
        func command(_ c: CommandForm) -> [String] {
            switch c {
            case let .shell(text): return [text]
            case let .exec(argv): return argv
            }
        }
        switch s.instruction {
        case let .run(c), let .cmd(c), let .entrypoint(c): return command(c)
        case let .copy(srcs, dest, _, _), let .add(srcs, dest, _, _): return srcs + s.inlineFiles.map { "<<" + $0.name } + [dest]
        case let .env(kvs), let .label(kvs): return kvs.map { "\($0.key)=\($0.value)" }
        case let .arg(name, value): return [value.map { "\(name)=\($0)" } ?? name]
        case let .workdir(v), let .user(v), let .stopSignal(v), let .onBuild(v): return [v]
        case let .expose(list), let .volume(list), let .shell(list): return list
        case let .healthcheck(h): return h.test
        }
    }

    func table() -> String {
        var lines = args.map { "ARG \($0.name)\($0.value.map { "=" + $0 } ?? "") (line \($0.line))" }
        for stage in stages {
            let problem = stage.baseProblem.map { ", base key unknown: \($0)" } ?? ""
            let role = stage.target ? ", the target" : stage.built ? ", built for the target" : ", not built"
            lines.append("stage \(stage.name ?? String(stage.index)) FROM \(stage.from) (line \(stage.line))\(role)" + problem)
            var t = TextTable(header: ["step", "line", "instruction", "target", "key", "ctr cached", "vm cached"])
            let mark = { (b: Bool?) in b.map { $0 ? "yes" : "no" } ?? "-" }
            t.rows.append(["base", "\(stage.line)", "FROM \(stage.from)", "both", String(stage.baseKey?.prefix(12) ?? "-"), mark(stage.cache.container), mark(stage.cache.vm)])
            for s in stage.steps {
                let text = ([s.instruction] + s.flags.sorted { $0.key < $1.key }.map { "--\($0.key)=\($0.value)" } + s.arguments).joined(separator: " ")
                t.rows.append([s.inherited ? "(\(s.index))" : "\(s.index)", "\(s.line)", String(text.replacingOccurrences(of: "\n", with: "\\n").prefix(60)), s.target,
                               String(s.key.prefix(12)), mark(s.cache.container), mark(s.cache.vm)])
            }
            lines.append(t.render())
            for s in stage.steps { lines += s.missing.map { "\(s.location): \($0)" } }
        }
        return lines.joined(separator: "\n")
    }
}
