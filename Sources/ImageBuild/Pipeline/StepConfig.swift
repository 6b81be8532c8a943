import Foundation
import OCI
import RecipePlan

/// The configuration in force at a step, by the image-config rules of a Containerfile: what its
/// command runs with (working folder, user, shell) and the image config it leaves (ENV, CMD,
/// ENTRYPOINT, LABEL, EXPOSE, VOLUME, STOPSIGNAL).
package struct StepConfig {
    package var workdir = "/"
    package var user: String?
    package var shell = ["/bin/sh", "-c"]
    /// An image without ENV still says where its programs are, as builders write it.
    package var image = ContainerConfig(env: ["PATH=\(Sandbox.defaultPath)"])

    package mutating func apply(_ i: Step.Instruction, environment: [KeyValue]) {
        switch i {
        case let .workdir(w): workdir = w; image.workingDir = w
        case let .user(u): user = u; image.user = u
        case let .shell(s): shell = s
        case .env:
            var env = environment.map { "\($0.key)=\($0.value)" }
            if !environment.contains(where: { $0.key == "PATH" }) { env.insert("PATH=\(Sandbox.defaultPath)", at: 0) }
            image.env = env
        case let .cmd(c): image.cmd = c.argv(shell: shell)
        case let .entrypoint(e): image.entrypoint = e.argv(shell: shell)
        // Set in place: a copy of the whole map for every entry made 100k LABELs take minutes.
        case let .label(kvs): for kv in kvs { StepConfig.set(&image.labels, kv.key, kv.value) }
        case let .expose(ports): for p in ports { StepConfig.set(&image.exposedPorts, p, .init()) }
        case let .volume(vols): for v in vols { StepConfig.set(&image.volumes, v, .init()) }
        case let .stopSignal(sig): image.stopSignal = sig
        case let .healthcheck(h): image.healthcheck = StepConfig.healthConfig(h)
        case let .onBuild(trigger): image.onBuild = (image.onBuild ?? []) + [trigger]
        default: break
        }
    }

    /// HEALTHCHECK as docker writes it: a duration or a count that is 0 (not set) is left out.
    static func healthConfig(_ h: HealthCheck) -> HealthConfig {
        let set = { (v: Int64) in v == 0 ? nil : v }
        return HealthConfig(test: h.test, interval: set(h.interval), timeout: set(h.timeout), startPeriod: set(h.startPeriod),
                            startInterval: set(h.startInterval), retries: h.retries == 0 ? nil : h.retries)
    }

    static func set<V>(_ map: inout [String: V]?, _ key: String, _ value: V) {
        if map == nil { map = [:] }
        map![key] = value
    }

    /// The configuration in force when step `index` (of `recipe.steps`) runs.
    package static func of(_ recipe: Recipe, through index: Int) -> StepConfig {
        var c = StepConfig()
        for s in recipe.steps.prefix(index + 1) { c.apply(s.instruction, environment: s.environment) }
        return c
    }
}
