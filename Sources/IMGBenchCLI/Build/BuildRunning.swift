import ArgumentParser
import Foundation
import Host
import ImageBuild
import RecipePlan
import RuntimeSuite

/// What `build` and `verify-repro` share: reading the recipe with its build arguments, and the
/// exit status a failed build gives.
enum BuildRunning {
    /// `--build-arg` values are `KEY=VALUE`, or `KEY` alone (its value from the environment).
    static func validate(buildArgs: [String]) throws {
        for a in buildArgs {
            let key = String(a.prefix { $0 != "=" })
            guard RecipeParser.isName(key) else { throw ValidationError("--build-arg needs KEY=VALUE or KEY, got '\(a)'") }
        }
    }

    /// `--secret id=ID,src=FILE` (or `source=`, and `type=file`), as docker build takes it: the
    /// files by id, absolute; a file that cannot be read is the usage error.
    static func secrets(_ specs: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for spec in specs {
            var fields: [String: String] = [:]
            for part in spec.split(separator: ",") {
                let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
                fields[kv[0]] = kv.count == 2 ? kv[1] : ""
            }
            guard let id = fields["id"], !id.isEmpty, let src = fields["src"] ?? fields["source"], (fields["type"] ?? "file") == "file" else {
                throw ValidationError("--secret \(spec): give id=ID,src=FILE")
            }
            let path = absolutePath(src)
            guard FileManager.default.isReadableFile(atPath: path) else { throw ValidationError("--secret \(spec): cannot read \(path)") }
            out[id] = path
        }
        return out
    }

    /// `KEY=VALUE` arguments as a dictionary; `KEY` alone takes the environment's value, as
    /// docker does, and is left out when the environment has none (the ARG keeps its default).
    static func buildArgs(_ args: [String], environment: [String: String] = ProcessInfo.processInfo.environment) -> [String: String] {
        var out: [String: String] = [:]
        for a in args {
            let kv = a.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            if kv.count == 2 { out[kv[0]] = kv[1] } else if let v = environment[kv[0]] { out[kv[0]] = v }
        }
        return out
    }

    /// Whether this build is rootless: asked for, or run by a user who is not root. A rootless
    /// build not yet in its user namespace re-enters itself there (and does not return); one
    /// that is goes on. The loop backend needs the host's root (loop devices).
    static func enterRootlessIfAsked(_ asked: Bool, vmBackend: VMPass.Backend?, vm: Bool) throws -> Bool {
        if UserNamespace.isNested && ProcessInfo.processInfo.environment[UserNamespace.marker] != nil { return true }
        guard asked || getuid() != 0 else { return false }
        if vmBackend == .loop {
            throw ValidationError("--vm-backend loop needs root (loop devices); a rootless build reaches the VM disk with --vm-backend guestfs")
        }
        if !asked { printErr("imgbench: not run as root: building rootless, in a user namespace (README, Security)") }
        do {
            // libguestfs's appliance, made here as the user (see prepareFixedAppliance), and its
            // cache folder, which must belong to the namespace's root: the user.
            var env: [String: String] = [:]
            let own = "/var/tmp/imgbench-guestfs-\(getuid())"
            if vm && ProcessInfo.processInfo.environment["LIBGUESTFS_PATH"] == nil {
                try GuestfsDisk.prepareFixedAppliance(in: "\(own)/appliance")
                env["LIBGUESTFS_PATH"] = "\(own)/appliance"
            }
            if vm && ProcessInfo.processInfo.environment["LIBGUESTFS_CACHEDIR"] == nil {
                try FileSystem.makeDirectories("\(own)/cache", mode: 0o700)
                env["LIBGUESTFS_CACHEDIR"] = "\(own)/cache"
            }
            try UserNamespace.reenter(Array(CommandLine.arguments.dropFirst()), environment: env)
        } catch {
            printErr("imgbench: error: a rootless build: \(error)")
            throw ExitCode(1)
        }
    }

    /// The recipe, or exit status 2 with `file:line:column: message`.
    static func load(_ recipe: String, file: String? = nil, buildArgs: [String: String]) throws -> Recipe {
        do {
            let r = try RecipeParser.load(recipe, file: file, buildArgs: buildArgs)
            try Workload.validate(r)
            return r
        } catch let e as RecipeError {
            printErr("imgbench: error: \(e)")
            throw ExitCode(2)
        }
    }

    /// `--baseline DIR`: a readable report of the same recipe, in a folder other than the output
    /// (which the build replaces); checked before the build, with exit status 2.
    static func checkBaseline(_ folder: String, recipe: String, output: String) throws -> String {
        do {
            guard LexicalPath.absolute(folder) != LexicalPath.absolute(output) else {
                throw DocumentError.invalid(place: folder, message: "the baseline is the output folder, which the build replaces; copy it aside first")
            }
            let old = try BuildReport.load("\(folder)/report.json")
            guard old.recipe == recipe else {
                throw DocumentError.invalid(place: "\(folder)/report.json: at recipe", message: "the baseline is of recipe '\(old.recipe)', this build of '\(recipe)'")
            }
            return folder
        } catch let e as DocumentError {
            printErr("imgbench: error: \(e)")
            throw ExitCode(2)
        }
    }

    /// Runs a build (or builds), removing `partials` on Ctrl-C; a failure is one line and exit
    /// status 1 (2 for a recipe the build refuses).
    static func run<T>(removing partials: [String], _ body: () throws -> T) throws -> T {
        do {
            return try removing(partials[...], body)
        } catch let e as BuildError {
            Cleanup.runAll()
            printErr("imgbench: error: \(e)")
            if case .recipe = e { throw ExitCode(2) }
            throw ExitCode(1)
        } catch let e as RecipeError {
            Cleanup.runAll()
            printErr("imgbench: error: \(e)")
            throw ExitCode(2)
        } catch let e where isReported(e) {
            Cleanup.runAll()
            printErr("imgbench: error: \(e)")
            throw ExitCode(1)
        } catch let e where HostError.fileErrorLine(e) != nil {
            // FileManager's errors on the output or cache folder (read-only, a mount point).
            Cleanup.runAll()
            printErr("imgbench: error: \(HostError.fileErrorLine(e)!)")
            throw ExitCode(1)
        }
    }

    static func removing<T>(_ partials: ArraySlice<String>, _ body: () throws -> T) throws -> T {
        guard let p = partials.first else { return try body() }
        return try Interrupts.removing(p) { try removing(partials.dropFirst(), body) }
    }
}

extension BuildRunning {
    /// The images a build makes and the stage it builds: `--images`; `--target` names the stage,
    /// as in docker (by name or number; default the last), and `container`, `vm` or `both`
    /// there, when no stage has that name, is the older spelling of `--images`, with a note.
    /// Another name: exit status 2.
    static func select(_ images: BuildCommand.BuildTarget?, target: String?, recipe: Recipe) throws -> (BuildCommand.BuildTarget, Recipe) {
        guard let target else { return (images ?? .both, recipe) }
        if let stage = recipe.stage(named: target) { return (images ?? .both, stage) }
        if let old = BuildCommand.BuildTarget(rawValue: target) {
            guard images == nil else { throw ValidationError("--target \(target) and --images: give the images with --images only") }
            printErr("imgbench: note: --target \(target) is deprecated for the images to build (--target names a stage, as in docker): use --images \(target)")
            return (old, recipe)
        }
        let names = recipe.stages.enumerated().map { $1.stageName ?? String($0) }.joined(separator: ", ")
        printErr("imgbench: error: \(recipe.file): --target \(target): the recipe has no stage of that name (its stages: \(names))")
        throw ExitCode(2)
    }
}

extension BuildCommand.BuildTarget {
    /// The targets a build makes.
    var targets: Set<StepTarget> { self == .both ? [.container, .vm] : self == .vm ? [.vm] : [.container] }
}
