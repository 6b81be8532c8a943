import Foundation
import NIOCore
import NIOFoundationCompat
import OCI

/// What a request sends: bytes in memory (a manifest, a small artifact) or a part of a file
/// (a blob), read as it is sent, so a request that is sent again reads it again.
enum Payload: Sendable {
    case bytes(ByteBuffer)
    case file(FilePart)
}

/// `count` bytes of a blob's file from `offset`, as the chunks a request body streams: read 1 MiB
/// at a time while the connection takes them, with `progress` told the blob's bytes done so far
/// (`offset` plus those sent). A file shorter than the part is an error naming it.
struct FilePart: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    var path: String
    var offset: Int64
    var count: Int64
    /// The blob the part belongs to, for `progress`.
    var blob: Descriptor
    var progress: TransferProgress?
    static let readSize = 1 << 20

    func makeAsyncIterator() -> Iterator { Iterator(part: self) }

    struct Iterator: AsyncIteratorProtocol {
        let part: FilePart
        var handle: FileHandle?
        var sent: Int64 = 0

        init(part: FilePart) { self.part = part }

        mutating func next() async throws -> ByteBuffer? {
            guard sent < part.count else {
                try? handle?.close()
                handle = nil
                return nil
            }
            let h = try handle ?? open()
            handle = h
            let want = Int(Swift.min(Int64(FilePart.readSize), part.count - sent))
            let data: Data
            do { data = try h.read(upToCount: want) ?? Data() } catch {
                throw RegistryError.settings(path: part.path, message: "cannot read the blob: \(error)")
            }
            guard !data.isEmpty else {
                throw RegistryError.settings(path: part.path, message: "blob is shorter than its descriptor says (\(part.offset + sent) bytes)")
            }
            sent += Int64(data.count)
            part.progress?(part.blob.digest, part.offset + sent, part.blob.size)
            return ByteBuffer(data: data)
        }

        func open() throws -> FileHandle {
            guard let h = FileHandle(forReadingAtPath: part.path) else {
                throw RegistryError.settings(path: part.path, message: "cannot open the blob")
            }
            do { try h.seek(toOffset: UInt64(part.offset)) } catch {
                throw RegistryError.settings(path: part.path, message: "cannot read the blob: \(error)")
            }
            return h
        }
    }
}
