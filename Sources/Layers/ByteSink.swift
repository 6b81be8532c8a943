/// Where a stream of bytes goes: a compressor, a hasher, a blob.
public protocol ByteSink: AnyObject {
    func write(_ buffer: UnsafeRawBufferPointer) throws
    /// No more bytes will come: flush what is buffered.
    func finish() throws
}
