import Foundation
import OCI
import Registry

/// The files `imgbench push` attaches to an image (report.json, handoff.json), read back from
/// the registry: the image's referrers (the API, or the referrers tag where the registry has none).
public enum AttachedArtifact {
    /// The image manifest a reference names, or `notFound` naming the registry and repository.
    static func image(_ reference: ImageReference, client: RegistryClient) async throws -> RemoteManifest {
        guard let image = try await client.manifest(reference.repository, reference: reference.manifestReference) else {
            throw RegistryError.notFound(registry: reference.registry, repository: reference.repository, what: "manifest \(reference.manifestReference)")
        }
        return image
    }

    /// The newest artifact of `type` referring to `image`, with its annotations.
    static func file(_ type: String, of image: RemoteManifest, _ reference: ImageReference,
                     client: RegistryClient) async throws -> (Data, [String: String]) {
        guard let found = try await client.fetchArtifact(reference.repository, subject: image.digest, artifactType: type) else {
            throw RegistryError.notFound(registry: reference.registry, repository: reference.repository,
                                         what: "\(type) artifact referring to \(image.digest) (pushed by imgbench push?)")
        }
        return found
    }

    /// The report.json attached to the image `reference` names (`imgbench check --baseline
    /// REGISTRY/REPO:TAG`, `imgbench report REGISTRY/REPO:TAG`).
    public static func report(of reference: ImageReference, options: RegistryClient.Options) async throws -> Data {
        try await RegistryClient.using(reference, options: options) { client in
            let image = try await image(reference, client: client)
            return try await file(ArtifactType.report, of: image, reference, client: client).0
        }
    }

    /// The layers of the image `reference` names that `digests` lists, fetched into a new OCI
    /// layout at `layout` (what `imgbench check` needs of a registry baseline to name the files
    /// behind a breach). Layers the image does not have are left out.
    public static func layers(of reference: ImageReference, _ digests: Set<String>, into layout: String,
                              options: RegistryClient.Options) async throws {
        try await RegistryClient.using(reference, options: options) { client in
            let image = try await image(reference, client: client)
            guard MediaType.isManifest(image.mediaType) else { return }
            let manifest = try CanonicalJSON.decode(Manifest.self, from: image.data, path: "\(reference)@\(image.digest)")
            let wanted = manifest.layers.filter { digests.contains($0.digest.description) }
            let store = try ImageLayout.create(at: layout).blobs
            _ = try await RegistryClient.concurrently(wanted.count) { i in
                try await client.fetchBlob(reference.repository, wanted[i], into: store)
            }
        }
    }
}
