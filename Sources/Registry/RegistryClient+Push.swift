import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import OCI

/// How a blob reached the registry.
public enum BlobOutcome: String, Sendable, Codable {
    /// The repository had it already (HEAD answered 200): nothing sent.
    case present
    /// Mounted from another repository of the registry: nothing sent.
    case mounted
    case uploaded
}

/// Told, as a blob goes up or comes down, the bytes done and the bytes in all.
public typealias TransferProgress = @Sendable (_ digest: Digest, _ done: Int64, _ total: Int64) -> Void

extension RegistryClient {
    /// Whether the repository holds a blob (`HEAD /v2/REPO/blobs/DIGEST`).
    public func hasBlob(_ repository: String, _ digest: Digest) async throws -> Bool {
        let call = Call(method: .HEAD, url: "/v2/\(repository)/blobs/\(digest)", repository: repository,
                        operation: "HEAD blob \(digest)", push: true)
        let response = try await send(call)
        try await expect(response, [200, 404], call)
        await drain(response)
        return response.status.code == 200
    }

    /// Puts a blob stored in a file into the repository unless it is there already: mounted from
    /// `mountFrom` (another repository of the same registry) when the registry can, else uploaded
    /// in one PUT, or in chunks (PATCH with Content-Range) when larger than the chunk size.
    public func pushBlob(_ repository: String, _ d: Descriptor, file: String, mountFrom: String? = nil,
                         progress: TransferProgress? = nil) async throws -> BlobOutcome {
        if try await hasBlob(repository, d.digest) {
            progress?(d.digest, d.size, d.size)
            return .present
        }
        if d.size > Int64(options.chunkSize) {
            guard let location = try await startUpload(repository, d, mountFrom: mountFrom) else { return .mounted }
            try await uploadChunks(repository, d, file: file, location: location, progress: progress)
            return .uploaded
        }
        let part = FilePart(path: file, offset: 0, count: d.size, blob: d, progress: progress)
        return try await pushWhole(repository, d, body: .file(part), mountFrom: mountFrom, progress: progress)
    }

    /// Puts a small blob held in memory (a config, an artifact's file).
    @discardableResult
    public func pushBlob(_ repository: String, data: Data, mediaType: String) async throws -> Descriptor {
        let d = Descriptor(mediaType: mediaType, digest: Digest.of(data), size: Int64(data.count))
        if try await hasBlob(repository, d.digest) { return d }
        _ = try await pushWhole(repository, d, body: .bytes(ByteBuffer(data: data)), mountFrom: nil, progress: nil)
        return d
    }

    /// A monolithic upload: POST then one PUT with every byte. A connection lost during the PUT
    /// starts the upload again (the registry may have kept part of the bytes).
    func pushWhole(_ repository: String, _ d: Descriptor, body: Payload, mountFrom: String?,
                   progress: TransferProgress?) async throws -> BlobOutcome {
        var attempt = 1
        while true {
            guard let location = try await startUpload(repository, d, mountFrom: mountFrom) else { return .mounted }
            let call = Call(method: .PUT, url: Self.adding(digest: d.digest, to: location), repository: repository,
                            operation: "PUT blob \(d.digest)", headers: [("Content-Type", "application/octet-stream")],
                            body: body, push: true, retries: false)
            do {
                let response = try await send(call)
                try await expect(response, [201], call)
                await drain(response)
                progress?(d.digest, d.size, d.size)
                return .uploaded
            } catch let e as RegistryError {
                guard case .connection = e, attempt < options.attempts else { throw e }
                try await Task.sleep(nanoseconds: delay(attempt, retryAfter: nil))
                attempt += 1
            }
        }
    }

    /// `POST /v2/REPO/blobs/uploads/`, with a mount request when there is a source repository:
    /// the upload's location, or nil when the registry mounted the blob (201).
    func startUpload(_ repository: String, _ d: Descriptor, mountFrom: String?) async throws -> String? {
        var url = "/v2/\(repository)/blobs/uploads/"
        if let from = mountFrom, from != repository { url += "?mount=\(d.digest)&from=\(from)" }
        let call = Call(method: .POST, url: url, repository: repository, operation: "POST blob upload \(d.digest)", push: true,
                        extraScopes: mountFrom.map { ["repository:\($0):pull"] } ?? [])
        let response = try await send(call)
        try await expect(response, [201, 202], call)
        await drain(response)
        if response.status.code == 201, mountFrom != nil { return nil }
        return try location(response, call)
    }

    func location(_ response: HTTPClientResponse, _ call: Call) throws -> String {
        guard let l = response.headers.first(name: "Location"), !l.isEmpty else {
            throw RegistryError.invalidResponse(registry: registry, repository: call.repository, operation: call.operation,
                                                message: "no Location header in the answer")
        }
        return l
    }

    static func adding(digest: Digest, to location: String) -> String {
        location + (location.contains("?") ? "&" : "?") + "digest=\(digest)"
    }
}
