import Foundation
import Host
import RecipePlan

// RUN: the command in the step's sandbox, with what its `--mount=` options mount.
extension Builder {
    func runStep(_ s: Step, _ cmd: CommandForm, in disk: Workspace, side: StepTarget, config: StepConfig, plan: BuildPlan, stages: [Int: StageBuild],
                 onOutput: @escaping @Sendable (String) -> Void) throws {
        let network: Sandbox.Network = switch s.network {
        case .default: options.network
        case .none: .none
        case .host: .host
        }
        try withStageRoots(Array(Set(s.mounts.compactMap(\.from))).sorted()[...], stages: stages, roots: [:]) { roots in
            var (mounts, locks) = try stepMounts(s, plan: plan, stageRoots: roots)
            defer { for l in locks { l.unlock() } }
            var environment = s.buildArgs + s.environment
            packages?.add(side, disk: disk, network: network, mounts: &mounts, environment: &environment)
            let r = try disk.run(cmd.argv(shell: config.shell), environment: environment,
                                 workdir: config.workdir, user: config.user, network: network, mounts: mounts, onOutput: onOutput)
            guard r.status == 0 else {
                throw BuildError.stepFailed(step: s.text, location: s.location, status: r.status, outputTail: Command.tail(r.output, lines: 25))
            }
        }
    }

    /// Runs `body` with the files of each stage of `list` as a folder, by stage.
    func withStageRoots(_ list: ArraySlice<Int>, stages: [Int: StageBuild], roots: [Int: String], _ body: ([Int: String]) throws -> Void) throws {
        guard let i = list.first else { return try body(roots) }
        guard let stage = stages[i] else { throw BuildError.invalid("RUN --mount from=: stage \(i) was not built") }
        try stage.withRoot { root in try withStageRoots(list.dropFirst(), stages: stages, roots: roots.merging([i: root]) { $1 }, body) }
    }

    /// What a RUN's `--mount=` options mount: a cache mount is a folder of the cache
    /// (`CACHE/mounts/`, by id), made with its uid, gid and mode the first time and shared by
    /// every step, build and image that names the id (a `sharing=locked` one held under its lock
    /// while the step runs); a tmpfs mount is memory; a secret mount is the `--secret` file of
    /// its id, read-only (none when not given, unless required); a bind mount a path of the
    /// context or of a stage, read-only. None is ever captured.
    func stepMounts(_ s: Step, plan: BuildPlan, stageRoots: [Int: String]) throws -> (StepMounts, [FileLock]) {
        var mounts = StepMounts(), locks: [FileLock] = []
        for m in s.mounts {
            switch m.kind {
            case .tmpfs:
                mounts.tmpfs.append(Sandbox.Tmpfs(inside: m.target, size: m.size))
            case .secret:
                guard let file = options.secrets[m.id] else {
                    if m.required { throw BuildError.invalid("\(s.location): the secret '\(m.id)' is required: give it with --secret id=\(m.id),src=FILE") }
                    continue
                }
                mounts.binds.append(Sandbox.Bind(host: file, inside: m.target, readOnly: true, isFile: true))
            case .cache:
                let dir = "\(options.cache)/mounts/\(BuildPlan.digest(["run-mount-cache", m.id]).prefix(32))"
                if !FileSystem.exists(dir) {
                    try FileSystem.makeDirectories(dir, mode: 0o755)
                    try FileManager.default.setAttributes([.ownerAccountID: m.uid, .groupOwnerAccountID: m.gid, .posixPermissions: m.mode], ofItemAtPath: dir)
                }
                if m.locked { locks.append(try FileLock(dir + ".lock", mode: .exclusive)) }
                mounts.binds.append(Sandbox.Bind(host: dir, inside: m.target, readOnly: m.readOnly))
            case .bind:
                mounts.binds.append(try bindSource(m, s, plan: plan, stageRoots: stageRoots))
            }
        }
        return (mounts, locks)
    }

    /// A bind mount's source on this host: a path of the context (found as COPY finds one, never
    /// outside it) or of a stage's files (resolved inside them), mounted read-only.
    func bindSource(_ m: RunMount, _ s: Step, plan: BuildPlan, stageRoots: [Int: String]) throws -> Sandbox.Bind {
        let host: String
        if let from = m.from, let root = stageRoots[from] {
            host = try RootedPath.resolve(m.source, in: root)
        } else {
            let found = try ContextCopy(context: recipe.context, ignore: plan.ignore, location: s.location).expand([m.source])
            guard found.count == 1 else {
                throw BuildError.recipe(RecipeError(s.location, "RUN --mount source=\(m.source) matches \(found.count) paths of the context: give one"))
            }
            host = found[0].isEmpty ? recipe.context : "\(recipe.context)/\(found[0])"
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: host, isDirectory: &isDirectory) else {
            throw BuildError.recipe(RecipeError(s.location, "RUN --mount source=\(m.source): no such file or folder"))
        }
        return Sandbox.Bind(host: host, inside: m.target, readOnly: true, isFile: !isDirectory.boolValue)
    }
}
