import Foundation
import QcowIO

// `FROM NAME:TAG` of the local image store: the VM side continues that build's chain.
extension VMPass {
    /// Takes `links` (file names in `folder`, base first: another build's finalised chain) as
    /// this pass's chain, so the steps add links on top of that disk; nil, taking nothing, when
    /// the chain is of another disk layout (its folder is not this pass's) or a link is not
    /// sound (`checkLink`: missing, or changed since it was recorded). The measure is a hit whose
    /// allocation is the chain's, which the exported chain holds.
    func continueChain(folder other: String, links: [String]) throws -> BuildReport.Measure? {
        guard other == folder, !links.isEmpty else { return nil }
        let start = Date()
        var parent: String?
        for l in links {
            let key = (l as NSString).deletingPathExtension
            guard VMPass.checkLink(in: folder, key: key, parent: parent) == .valid else { return nil }
            parent = l
        }
        var m = BuildReport.Measure(seconds: 0, cacheHit: true)
        var allocated: UInt64 = 0, diskBytes: UInt64 = 0
        for l in links {
            let img = try QcowImage(path: "\(folder)/\(l)")
            defer { try? img.close() }
            let map = try AllocationMap.compute(img)
            allocated += map.chain[0].allocatedBytes
            diskBytes += map.chain[0].diskBytes
        }
        m.qcow2AllocatedBytes = allocated
        m.qcow2DiskBytes = diskBytes
        chain = links.map { "\(folder)/\($0)" }
        top = chain.last
        m.seconds = Date().timeIntervalSince(start)
        m.builtSeconds = 0
        return m
    }
}
