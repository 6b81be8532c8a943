/// Where a stream of bytes goes: a compressor, a hasher, a blob.
public protocol ByteSink: AnyObject {
    func write(_ buffer: UnsafeRawBufferPointer) throws
    /// No more bytes will come: flush what is buffered.
    func finish() throws
}

/// The same bytes into two sinks, in order: the first, then the second.
public final class TeeSink: ByteSink {
    let first: ByteSink
    let second: ByteSink

    public init(_ first: ByteSink, _ second: ByteSink) {
        self.first = first
        self.second = second
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        try first.write(buffer)
        try second.write(buffer)
    }

    public func finish() throws {
        try first.finish()
        try second.finish()
    }
}
