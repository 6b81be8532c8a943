/// The end of a qcow2 file, where new clusters are appended: the first cluster index past
/// everything allocated. Clusters are only ever taken from here, never reused.
struct ClusterAllocator {
    private(set) var endCluster: UInt64
    let clusterBits: Int

    init(fileSize: UInt64, clusterBits: Int) {
        self.clusterBits = clusterBits
        endCluster = (fileSize + (UInt64(1) << UInt64(clusterBits)) - 1) >> UInt64(clusterBits)
    }

    /// The host byte offset past everything allocated: metadata must point below it.
    var endOffset: UInt64 { endCluster << UInt64(clusterBits) }

    /// Takes `count` contiguous clusters and returns the index of the first. The file is
    /// extended first, so nothing written later points past its end.
    mutating func take(_ count: Int, in file: BlockFile) throws -> UInt64 {
        let first = endCluster
        endCluster += UInt64(count)
        try file.truncate(to: max(try file.size(), endOffset))
        return first
    }
}
