import Foundation
import Host
import RecipePlan

/// The package cache of a build (`CACHE/packages`): apt's http downloads of every RUN step and of
/// mmdebstrap go through a `PackageProxy` on 127.0.0.1, which keeps each package it fetched and
/// serves it again to the other side of the step, to the later steps and to later builds, as a
/// BuildKit user's `--mount=type=cache,target=/var/cache/apt` shares one folder.
///
/// It is never part of an image: the step sees only `APT_CONFIG`, a file on the container's own
/// /dev (a tmpfs, never captured) that names the proxy. apt reads it before its own configuration
/// (`/etc/apt/apt.conf.d`, `/etc/apt/apt.conf`), so a recipe's own proxy setting still wins, and
/// apt's clean-up inside a RUN (`apt-get clean`, `rm -rf /var/cache/apt/archives`) removes the
/// files from the layer as it would without the cache. Each side has a proxy of its own, so that
/// the report counts per side and per step what was downloaded and what the cache saved.
final class PackageCache: @unchecked Sendable {
    let folder: String
    let container: PackageProxy
    let vm: PackageProxy
    private let configFolder: String
    private let cleanup: Int

    /// Where the apt configuration appears in the step's container: on its /dev tmpfs.
    static let configInside = "/dev/imgbench-package-cache.conf"

    /// `environment`'s `http_proxy` and `no_proxy`, when set, are the way to the archive: a site's
    /// apt-cacher-ng, or the proxy a company's network needs.
    init(cache: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        folder = "\(cache)/packages"
        let through = try PackageProxy.UpstreamProxy.from(environment: environment)
        container = PackageProxy(folder: folder, through: through)
        vm = PackageProxy(folder: folder, through: through)
        configFolder = try TemporaryFolder.make(prefix: "imgbench-package-cache")
        let made = configFolder
        cleanup = Cleanup.register("remove the package cache's apt configuration") { try? FileSystem.removeTree(made) }
        do {
            for (proxy, side) in [(container, StepTarget.container), (vm, .vm)] {
                try proxy.start()
                try Data(proxy.aptConfiguration.utf8).write(to: URL(fileURLWithPath: configFile(side)))
            }
        } catch {
            close()
            throw error
        }
    }

    func proxy(_ side: StepTarget) -> PackageProxy { side == .vm ? vm : container }

    func configFile(_ side: StepTarget) -> String { "\(configFolder)/\(side.rawValue).conf" }

    /// What a command on `side` gets: the configuration file mounted on its /dev and `APT_CONFIG`
    /// naming it; nothing when it runs with no network, sets APT_CONFIG itself, or runs in
    /// guestfs's appliance, which mounts nothing (it downloads as before).
    func add(_ side: StepTarget, disk: Workspace, network: Sandbox.Network, mounts: inout StepMounts, environment: inout [KeyValue]) {
        guard disk is LocalRoot, network == .host, !environment.contains(where: { $0.key == "APT_CONFIG" }) else { return }
        mounts.binds.append(Sandbox.Bind(host: configFile(side), inside: PackageCache.configInside, readOnly: true, isFile: true))
        environment.append(KeyValue("APT_CONFIG", PackageCache.configInside))
    }

    /// The environment mmdebstrap's apt runs with, so that the base's packages are kept too.
    var baseEnvironment: [String: String] { ["http_proxy": "http://127.0.0.1:\(container.port)/"] }

    /// Stops both proxies and removes the configuration.
    func close() {
        container.stop()
        vm.stop()
        try? FileSystem.removeTree(configFolder)
        Cleanup.unregister(cleanup)
    }
}
