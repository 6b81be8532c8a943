import ArgumentParser
import Foundation
import ImageBuild
import Layers
import Repro

struct VerifyReproCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-repro",
        abstract: "Build a recipe twice without the step cache and say what differs, on both outputs.",
        discussion: """
            Both builds run under one SOURCE_DATE_EPOCH (the environment's; else the recipe \
            file's modification time) into OUTPUT/first and OUTPUT/second. OCI side: manifest, \
            config and layer digests, and for a layer that differs, its entries that do. VM side: \
            the flattened disks cluster by cluster, and for clusters that differ, the ext4 \
            structures and files they belong to. \
            Exit status: 0 when the OCI image is identical (and, with --strict-vm, the flattened \
            disk too), 1 when it is not or a build failed, 2 when the recipe is not accepted.
            """)

    @Argument(help: "A recipe folder holding a Containerfile, or a recipe file.", transform: absolutePath) var recipe: String
    @Option(help: "The images to build and compare: container, vm or both.") var images: BuildCommand.BuildTarget?
    @Option(help: "The stage to build, as docker reads --target (--target container|vm|both, for a recipe without a stage of that name, is the older spelling of --images).")
    var target: String?
    @Option(help: "Storage driver of the container builds.") var driver: StorageDriverKind = .overlay
    @Option(help: "How VM steps reach the disk: loop or guestfs (see imgbench build).") var vmBackend: VMPass.Backend = .loop
    @Option(help: "Output folder of the two builds (default out/NAME-repro).", transform: absolutePath) var output: String?
    @Option(help: "Cache folder (its Debian base is reused; steps are rebuilt).", transform: absolutePath) var cache: String?
    @Option(name: .customLong("build-arg"), help: "KEY=VALUE for an ARG; may repeat.") var buildArgs: [String] = []
    @Flag(help: "Also fail (exit 1) when the flattened VM disks differ.") var strictVm = false
    @Option(help: "auto (a live display on a terminal, plain lines otherwise), plain, tty or quiet.") var progress: ProgressMode = .auto
    @Option(help: "table or json.") var format: OutputFormat = .table

    func validate() throws {
        try BuildRunning.validate(buildArgs: buildArgs)
    }

    func run() throws {
        let args = BuildRunning.buildArgs(buildArgs)
        let (chosen, parsed) = try BuildRunning.select(images, target: target, recipe: try BuildRunning.load(recipe, buildArgs: args))
        var options = BuildOptions(output: output ?? absolutePath("out/\(parsed.name)-repro"),
                                   cache: cache ?? absolutePath(BuildOptions.defaultCache))
        options.buildArgs = args
        options.targets = chosen.targets
        options.driver = driver
        options.vmBackend = vmBackend
        let env = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"]
        if let epoch = env.flatMap(Int.init) {
            options.sourceDateEpoch = epoch
        } else {
            let mtime = (try? FileManager.default.attributesOfItem(atPath: parsed.file)[.modificationDate] as? Date) ?? nil
            let epoch = Int((mtime ?? Date(timeIntervalSince1970: 0)).timeIntervalSince1970)
            options.sourceDateEpoch = epoch
            // Children (and the capture's own reading of it) see the same value.
            setenv("SOURCE_DATE_EPOCH", "\(epoch)", 1)
            printErr("imgbench: SOURCE_DATE_EPOCH is not set; using \(epoch), the modification time of \(parsed.file)")
        }
        let events = TerminalBuildEvents(mode: progress)
        let out = options.output
        let report = try BuildRunning.run(removing: ["\(out)/first.partial", "\(out)/second.partial"]) {
            try Reproducibility.verify(recipe: parsed, options: options, events: events)
        }
        switch format {
        case .json: printOut(try JSONOutput.string(report))
        case .table: printOut(ReproTable.render(report))
        }
        if !report.ociIdentical || (strictVm && !report.vmIdentical) { throw ExitCode(1) }
    }
}

enum ReproTable {
    static func render(_ r: ReproReport) -> String {
        var lines = ["\(r.recipe): two builds without the step cache, SOURCE_DATE_EPOCH=\(r.sourceDateEpoch.map(String.init) ?? "unset")",
                     "  \(r.builds.joined(separator: "\n  "))", ""]
        if let o = r.oci {
            lines.append("OCI image: " + (o.identical ? "identical, manifest \(o.manifestDigests[0])"
                                                      : "DIFFERS: manifest \(o.manifestDigests[0]) vs \(o.manifestDigests[1])"))
            if o.configDigests[0] != o.configDigests[1] {
                lines.append("  config \(o.configDigests[0]) vs \(o.configDigests[1])")
            }
            var t = TextTable(header: ["layer", "step", "first", "second", "same"])
            for l in o.layers {
                t.rows.append(["\(l.index)", String(l.step.prefix(44)), short(l.digests[0]), short(l.digests[1]), l.identical ? "yes" : "NO"])
            }
            lines.append(t.render())
            for l in o.layers where !l.identical {
                lines.append("layer \(l.index) (\(l.step)):")
                for d in l.differences ?? [] { lines.append("  \(d)") }
            }
            lines.append("")
        }
        if let v = r.vm {
            if !v.links.isEmpty {
                var t = TextTable(header: ["link", "disk after", "same"])
                for l in v.links {
                    t.rows.append(["\(l.index)", String(l.step.prefix(50)), l.identical ? "yes" : "NO, from offset \(l.firstDifference ?? 0)"])
                }
                lines.append(t.render())
            }
            if v.identical {
                lines.append("VM disk: identical (\(v.disks[0]) and \(v.disks[1]))")
            } else {
                lines.append("VM disk: \(v.differingClusters.count) of \(v.virtualSize / v.clusterSize) clusters (\(ByteSize.format(v.clusterSize)) each) differ, "
                             + "\(v.differingBlocks) filesystem blocks of \(v.blockSize) bytes")
                var t = TextTable(header: ["blocks", "clusters", "belong to"])
                for o in v.owners.prefix(40) { t.rows.append(["\(o.blocks)", "\(o.clusters)", o.what]) }
                lines.append(t.render())
                if v.owners.count > 40 { lines.append("... and \(v.owners.count - 40) more (--format json lists them all)") }
            }
        }
        return lines.joined(separator: "\n")
    }

    static func short(_ digest: String) -> String {
        digest.hasPrefix("sha256:") ? String(digest.dropFirst(7).prefix(16)) : digest
    }
}
