import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import OCI

/// A manifest (or index) as the registry holds it: the exact bytes, their media type and digest.
public struct RemoteManifest: Sendable {
    public var data: Data
    public var mediaType: String
    public var digest: Digest

    public var descriptor: Descriptor { Descriptor(mediaType: mediaType, digest: digest, size: Int64(data.count)) }
}

extension RegistryClient {
    static let manifestTypes = [MediaType.imageManifest, MediaType.imageIndex, MediaType.dockerManifest, MediaType.dockerManifestList]

    /// Puts a manifest under a tag or its digest (`PUT /v2/REPO/manifests/REF`). Returns whether
    /// the registry processed the manifest's `subject` (the `OCI-Subject` header of
    /// distribution-spec 1.1: it then lists the manifest as a referrer itself).
    @discardableResult
    public func putManifest(_ repository: String, reference: String, data: Data, mediaType: String) async throws -> Bool {
        let call = Call(method: .PUT, url: "/v2/\(repository)/manifests/\(reference)", repository: repository,
                        operation: "PUT manifest \(reference)", headers: [("Content-Type", mediaType)],
                        body: .bytes(ByteBuffer(data: data)), push: true)
        let response = try await send(call)
        try await expect(response, [201], call)
        await drain(response)
        if let given = response.headers.first(name: "Docker-Content-Digest"), given != Digest.of(data).description {
            throw RegistryError.invalidResponse(registry: registry, repository: repository, operation: call.operation,
                                                message: "stored as \(given), expected \(Digest.of(data))")
        }
        return response.headers.first(name: "OCI-Subject") != nil
    }

    /// Gets a manifest by tag or digest, or nil when the repository has none under it (404).
    /// A manifest asked for by digest is checked against it.
    public func manifest(_ repository: String, reference: String, push: Bool = false) async throws -> RemoteManifest? {
        let call = Call(method: .GET, url: "/v2/\(repository)/manifests/\(reference)", repository: repository,
                        operation: "GET manifest \(reference)", headers: [("Accept", Self.manifestTypes.joined(separator: ", "))],
                        push: push)
        let response = try await send(call)
        try await expect(response, [200, 404], call)
        guard response.status.code == 200 else { await drain(response); return nil }
        let data = Data(buffer: try await response.body.collect(upTo: 4 << 20))
        let digest = Digest.of(data)
        if reference.hasPrefix("sha256:"), reference != digest.description {
            throw RegistryError.invalidResponse(registry: registry, repository: repository, operation: call.operation,
                                                message: "content hashes to \(digest)")
        }
        let type = response.headers.first(name: "Content-Type")?.split(separator: ";").first.map(String.init) ?? MediaType.imageManifest
        return RemoteManifest(data: data, mediaType: type, digest: digest)
    }

    /// Gets a blob into a blob store (streamed, hashed as it comes, kept only when its digest and
    /// size match). A connection lost part way starts the blob again.
    public func fetchBlob(_ repository: String, _ d: Descriptor, into store: BlobStore, progress: TransferProgress? = nil) async throws {
        if store.contains(d.digest) { return }
        var attempt = 1
        while true {
            do {
                return try await fetchOnce(repository, d, into: store, progress: progress)
            } catch let e as RegistryError {
                guard case .connection = e, attempt < options.attempts else { throw e }
                try await Task.sleep(nanoseconds: delay(attempt, retryAfter: nil))
                attempt += 1
            }
        }
    }

    func fetchOnce(_ repository: String, _ d: Descriptor, into store: BlobStore, progress: TransferProgress?) async throws {
        let call = Call(method: .GET, url: "/v2/\(repository)/blobs/\(d.digest)", repository: repository, operation: "GET blob \(d.digest)")
        let response = try await send(call)
        try await expect(response, [200], call)
        let writer = try store.writer()
        do {
            for try await chunk in response.body {
                try chunk.withUnsafeReadableBytes { try writer.write($0) }
                progress?(d.digest, writer.count, d.size)
            }
        } catch let e as OCIError {
            writer.abort()
            throw e
        } catch {
            writer.abort()
            throw RegistryError.connection(registry: registry, repository: repository, operation: call.operation,
                                           message: Self.describe(error), attempts: 1)
        }
        try commit(writer, d, call, store: store)
    }

    func commit(_ writer: BlobWriter, _ d: Descriptor, _ call: Call, store: BlobStore) throws {
        guard writer.count == d.size else {
            writer.abort()
            throw RegistryError.invalidResponse(registry: registry, repository: call.repository, operation: call.operation,
                                                message: "\(writer.count) bytes, the descriptor says \(d.size)")
        }
        let (digest, _) = try writer.commit()
        guard digest == d.digest else {
            try? FileManager.default.removeItem(atPath: store.path(of: digest))
            throw RegistryError.invalidResponse(registry: registry, repository: call.repository, operation: call.operation,
                                                message: "content hashes to \(digest)")
        }
    }
}
