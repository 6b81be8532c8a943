import ArgumentParser
import Foundation
import Host
import ImageBuild
import RecipePlan
import RuntimeSuite

/// What `build` and `verify-repro` share: reading the recipe with its build arguments, and the
/// exit status a failed build gives.
enum BuildRunning {
    /// `--build-arg` values must be `KEY=VALUE`.
    static func validate(buildArgs: [String]) throws {
        for a in buildArgs where !a.contains("=") { throw ValidationError("--build-arg needs KEY=VALUE, got '\(a)'") }
    }

    /// `KEY=VALUE` arguments as a dictionary.
    static func buildArgs(_ args: [String]) -> [String: String] {
        var out: [String: String] = [:]
        for a in args {
            let kv = a.split(separator: "=", maxSplits: 1).map(String.init)
            out[kv[0]] = kv.count > 1 ? kv[1] : ""
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
    static func load(_ recipe: String, buildArgs: [String: String]) throws -> Recipe {
        do {
            let r = try RecipeParser.load(recipe, buildArgs: buildArgs)
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

extension BuildCommand.BuildTarget {
    /// The targets a build makes.
    var targets: Set<StepTarget> { self == .both ? [.container, .vm] : self == .vm ? [.vm] : [.container] }
}
