import Foundation
import Host
import OCI
import RecipePlan
import Registry

/// `FROM REGISTRY/REPO:TAG` and `FROM REPO@sha256:HEX`: the image, pulled by digest into an OCI
/// layout of the cache, is then a base as `FROM oci:` makes one.
///
/// ```
/// CACHE/bases/registry-HEX/layout        the image (manifest, config, layers) tagged `base`
/// CACHE/bases/registry-HEX.lock          (HEX: the manifest digest's first 32 hex digits)
/// ```
/// A tag is resolved to a digest first (one GET of the manifest, each build); the layout is then
/// the digest's, made once under its entry lock and complete once `base` is tagged (last).
extension Builder {
    static let registryBaseTag = "base"

    func registryBase(_ reference: ImageReference, in cache: BuildCache) throws -> Base {
        let manifest = try resolveBase(reference)
        let dir = "\(options.cache)/bases/registry-\(manifest.digest.hex.prefix(32))"
        let layout = "\(dir)/layout"
        _ = try cache.entry("the base \(reference)", lock: dir + ".lock", check: { Self.checkLayout(layout, manifest.digest) }) {
            events.note("base: pulling \(reference) (\(manifest.digest))")
            try BuildCache.makingPartial(dir) {
                let target = try ImageLayout.create(at: layout)
                _ = try RegistryClient.blocking(reference, options: options.registry) { client in
                    try await client.pullImage(reference.repository, manifest, into: target, tag: Self.registryBaseTag)
                }
            }
        }
        return try ociBase(path: layout, tag: Self.registryBaseTag, label: reference.description, in: cache)
    }

    /// The image manifest `reference` names (for an index, its linux/amd64 manifest), by digest.
    func resolveBase(_ reference: ImageReference) throws -> RemoteManifest {
        let repository = reference.repository
        return try BuildError.naming("\(recipe.baseLocation): FROM \(reference)") {
            try RegistryClient.blocking(reference, options: options.registry) { client in
                guard var m = try await client.manifest(repository, reference: reference.manifestReference) else {
                    throw RegistryError.notFound(registry: reference.registry, repository: repository, what: "manifest \(reference.manifestReference)")
                }
                if MediaType.isIndex(m.mediaType), let d = try Self.platformManifest(in: m),
                   let one = try await client.manifest(repository, reference: d.digest.description) {
                    m = one
                }
                return m
            }
        }
    }

    /// The linux/amd64 entry of an index.
    static func platformManifest(in index: RemoteManifest) throws -> Descriptor? {
        let i = try CanonicalJSON.decode(Index.self, from: index.data, path: index.digest.description)
        return i.manifests.first { $0.platform?.os == "linux" && $0.platform?.architecture == "amd64" }
    }

    /// Whether a registry base's layout is complete: its tag is written last.
    static func hasTaggedLayout(_ path: String) -> Bool {
        (try? ImageLayout(opening: path).resolve(tag: registryBaseTag)) != nil
    }

    /// A registry base's layout is complete once its tag names the expected manifest.
    static func checkLayout(_ path: String, _ digest: Digest) -> BuildCache.Check {
        guard let d = try? ImageLayout(opening: path).resolve(tag: registryBaseTag) else { return .missing }
        return d.digest == digest ? .valid : .bad("its tag names \(d.digest)")
    }
}
