import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import OCI

extension RegistryClient {
    /// A chunked upload (distribution-spec "pushing a blob in chunks"): PATCH after PATCH with
    /// `Content-Range: START-END`, following the Location each answer gives, then the closing PUT
    /// with the digest. A chunk whose connection fails is resumed where the registry says the
    /// upload stands (`GET` of the upload's location answers its `Range`).
    func uploadChunks(_ repository: String, _ d: Descriptor, file: String, location start: String,
                      progress: TransferProgress?) async throws {
        var location = start
        var offset: Int64 = 0
        var failures = 0
        while offset < d.size {
            let count = min(Int64(options.chunkSize), d.size - offset)
            let body = FilePart(path: file, offset: offset, count: count, blob: d, progress: progress)
            do {
                location = try await patch(repository, d, body: body, location: location)
                offset += count
                failures = 0
                progress?(d.digest, offset, d.size)
            } catch let RegistryError.connection(r, repo, op, message, _) {
                failures += 1
                guard failures < options.attempts else {
                    throw RegistryError.connection(registry: r, repository: repo, operation: op, message: message, attempts: failures)
                }
                try await Task.sleep(nanoseconds: delay(failures, retryAfter: nil))
                (location, offset) = try await resumePoint(repository, d, location: location)
            }
        }
        let call = Call(method: .PUT, url: Self.adding(digest: d.digest, to: location), repository: repository,
                        operation: "PUT blob \(d.digest) (closing a chunked upload)", push: true)
        let response = try await send(call)
        try await expect(response, [201], call)
        await drain(response)
    }

    func patch(_ repository: String, _ d: Descriptor, body: FilePart, location: String) async throws -> String {
        let offset = body.offset, end = body.offset + body.count - 1
        let call = Call(method: .PATCH, url: location, repository: repository,
                        operation: "PATCH blob \(d.digest) bytes \(offset)-\(end)",
                        headers: [("Content-Type", "application/octet-stream"), ("Content-Range", "\(offset)-\(end)")],
                        body: .file(body), push: true, retries: false)
        let response = try await send(call)
        try await expect(response, [202], call)
        await drain(response)
        return try self.location(response, call)
    }

    /// Where to go on after a lost chunk: where the upload stands, or, when the registry no
    /// longer knows the upload at its state (distribution invalidates an upload whose PATCH was
    /// cut), a new upload from the first byte.
    func resumePoint(_ repository: String, _ d: Descriptor, location: String) async throws -> (String, Int64) {
        do {
            return try await uploadStatus(repository, d, location: location)
        } catch RegistryError.status(_, _, _, let status, _) where status == 404 || status == 416 || status == 400 {
            guard let fresh = try await startUpload(repository, d, mountFrom: nil) else { return (location, d.size) }
            return (fresh, 0)
        }
    }

    /// Where an upload stands: its location and the offset of the next byte the registry wants.
    func uploadStatus(_ repository: String, _ d: Descriptor, location: String) async throws -> (String, Int64) {
        let call = Call(method: .GET, url: location, repository: repository, operation: "GET upload status of \(d.digest)", push: true)
        let response = try await send(call)
        try await expect(response, [204], call)
        await drain(response)
        let next = (try? self.location(response, call)) ?? location
        return (next, Self.nextOffset(range: response.headers.first(name: "Range")))
    }

    /// `Range: 0-END` names the last byte received; distribution writes `0--1` for none.
    static func nextOffset(range: String?) -> Int64 {
        guard let r = range, let dash = r.firstIndex(of: "-") else { return 0 }
        guard let end = Int64(r[r.index(after: dash)...]), end >= 0 else { return 0 }
        return end + 1
    }
}
