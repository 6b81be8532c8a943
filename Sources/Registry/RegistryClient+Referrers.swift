import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import OCI

/// Artifacts that refer to a manifest (distribution-spec 1.1, "Listing Referrers"): a manifest
/// whose `subject` is that manifest. A registry with the referrers API lists them itself at
/// `GET /v2/REPO/referrers/DIGEST`; on one without it (distribution 2.8, which answers 404
/// there) the client keeps the list in an index under the fallback tag `sha256-HEX`.
extension RegistryClient {
    /// The fallback tag of distribution-spec 1.1 for a subject's referrers.
    public static func referrersTag(_ subject: Digest) -> String { "\(subject.algorithm)-\(subject.hex)" }

    /// Lists the referrers of a manifest, of one artifact type when given: from the referrers
    /// API, else from the fallback tag (none when neither has any).
    public func referrers(_ repository: String, subject: Digest, artifactType: String? = nil) async throws -> [Descriptor] {
        var all = try await referrersFromAPI(repository, subject: subject)
        if all == nil { all = try await referrersIndex(repository, subject: subject)?.manifests }
        return (all ?? []).filter { artifactType == nil || $0.artifactType == artifactType }
    }

    func referrersFromAPI(_ repository: String, subject: Digest) async throws -> [Descriptor]? {
        let call = Call(method: .GET, url: "/v2/\(repository)/referrers/\(subject)", repository: repository,
                        operation: "GET referrers of \(subject)", headers: [("Accept", MediaType.imageIndex)])
        let response = try await send(call)
        try await expect(response, [200, 404], call)
        guard response.status.code == 200 else { await drain(response); return nil }
        let data = Data(buffer: try await response.body.collect(upTo: 4 << 20))
        guard let index = try? JSONDecoder().decode(Index.self, from: data) else {
            throw RegistryError.invalidResponse(registry: registry, repository: repository, operation: call.operation,
                                                message: "the answer is not an image index")
        }
        return index.manifests
    }

    func referrersIndex(_ repository: String, subject: Digest, push: Bool = false) async throws -> Index? {
        let tag = Self.referrersTag(subject)
        guard let m = try await manifest(repository, reference: tag, push: push) else { return nil }
        guard MediaType.isIndex(m.mediaType), let index = try? JSONDecoder().decode(Index.self, from: m.data) else {
            throw RegistryError.invalidResponse(registry: registry, repository: repository, operation: "GET manifest \(tag)",
                                                message: "the referrers tag holds a \(m.mediaType), not an image index")
        }
        return index
    }

    /// Adds artifacts (already pushed, their subject processed by the registry or not) to the
    /// referrers tag of their subject, keeping what the index listed.
    public func addToReferrersTag(_ repository: String, subject: Digest, artifacts: [Descriptor]) async throws {
        var index = try await referrersIndex(repository, subject: subject, push: true) ?? Index()
        let new = artifacts.filter { a in !index.manifests.contains { $0.digest == a.digest } }
        guard !new.isEmpty else { return }
        index.manifests += new
        try await putManifest(repository, reference: Self.referrersTag(subject), data: CanonicalJSON.encode(index),
                              mediaType: MediaType.imageIndex)
    }
}
