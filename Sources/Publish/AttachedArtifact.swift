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
}
