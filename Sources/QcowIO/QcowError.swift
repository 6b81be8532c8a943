/// Everything QcowIO refuses or fails at, naming the file and the place.
public enum QcowError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file is shorter than a structure that must be read from it.
    case truncated(path: String, what: String, offset: UInt64, needed: Int, fileSize: UInt64)
    case badMagic(path: String, found: UInt32)
    /// A header field holds a value this format or this library does not accept.
    case invalidField(path: String, field: String, value: UInt64, reason: String)
    case unsupportedFeature(path: String, feature: String)
    case encrypted(path: String, method: UInt32)
    /// A table entry is malformed (reserved bits, unaligned, beyond the end of file).
    case invalidEntry(path: String, table: String, index: UInt64, value: UInt64, reason: String)
    case backingLoop(path: String, backing: String)
    case backingChainTooDeep(path: String, depth: Int)
    case backingNotFound(path: String, backing: String)
    case decompressionFailed(path: String, guestOffset: UInt64, hostOffset: UInt64)
    case outOfRange(path: String, offset: UInt64, length: Int, virtualSize: UInt64)
    case readOnly(path: String, reason: String)
    case io(path: String, operation: String, errno: Int32, message: String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .truncated(path, what, offset, needed, fileSize):
            return "\(path): truncated: \(what) needs \(needed) bytes at offset \(offset), file has \(fileSize) bytes"
        case let .badMagic(path, found):
            return "\(path): not a qcow2 image: magic is 0x\(String(found, radix: 16)), expected 0x514649fb"
        case let .invalidField(path, field, value, reason):
            return "\(path): header field \(field)=\(value): \(reason)"
        case let .unsupportedFeature(path, feature):
            return "\(path): unsupported feature: \(feature)"
        case let .encrypted(path, method):
            return "\(path): encrypted images are refused (crypt_method=\(method))"
        case let .invalidEntry(path, table, index, value, reason):
            return "\(path): \(table)[\(index)]=0x\(String(value, radix: 16)): \(reason)"
        case let .backingLoop(path, backing):
            return "\(path): backing chain loops back to \(backing)"
        case let .backingChainTooDeep(path, depth):
            return "\(path): backing chain deeper than \(depth) images"
        case let .backingNotFound(path, backing):
            return "\(path): backing file \(backing) not found"
        case let .decompressionFailed(path, guestOffset, hostOffset):
            return "\(path): compressed cluster at guest offset \(guestOffset) (host offset \(hostOffset)) does not inflate"
        case let .outOfRange(path, offset, length, virtualSize):
            return "\(path): access of \(length) bytes at \(offset) is beyond the virtual size \(virtualSize)"
        case let .readOnly(path, reason):
            return "\(path): cannot write: \(reason)"
        case let .io(path, operation, errno, message):
            return "\(path): \(operation) failed: \(message) (errno \(errno))"
        case let .invalidArgument(message):
            return message
        }
    }
}
