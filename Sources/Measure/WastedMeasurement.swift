import Foundation
import Host
import ImageBuild
import Layers
import OCI
import QcowIO

/// Wasted bytes of a built image, on both sides.
///
/// - OCI image, per layer: bytes a later layer deletes or replaces, bytes of package caches and
///   lists left in the image, the largest offenders by path, and an efficiency figure (the share of
///   all layers' file bytes that a container sees and needs). See `WastedBytes`.
/// - VM chain, per link: clusters the link allocated that a later link overwrote (the guest reads
///   the later link's copy: allocated minus visible), and clusters of it that the final filesystem
///   has freed (files a later step deleted; read from the ext4 block bitmaps of the flattened chain
///   with dumpe2fs): still visible from it, or hidden by a later link's zero marking where a trim
///   discarded them (qcow2's zero flag over a backing file's data), which is freeing, not overwriting.
public struct WastedMeasurement: Sendable {
    public var image: BuiltImage
    /// Scratch space for a raw copy of the disk (removed after).
    public var workdir: String
    public var top: Int

    public init(image: BuiltImage, workdir: String, top: Int = 20) {
        self.image = image
        self.workdir = workdir
        self.top = top
    }

    public struct OCILayer: Codable, Equatable, Sendable {
        public var index: Int
        /// The step that made the layer ("base" for the base's layers).
        public var step: String
        public var compressedBytes: Int64
        public var fileBytes: Int64
        public var hiddenBytes: Int64
        public var cacheBytes: Int64
    }

    public struct OCI: Codable, Equatable, Sendable {
        public var layers: [OCILayer]
        public var offenders: [WastedBytes.Offender]
        public var totalFileBytes: Int64
        public var wastedBytes: Int64
        public var efficiency: Double
    }

    public struct VMLink: Codable, Equatable, Sendable {
        public var path: String
        public var step: String
        public var allocatedBytes: UInt64
        /// Allocated here, then overwritten by a later link.
        public var overwrittenBytes: UInt64
        /// Free in the final filesystem: still visible from here, or discarded by a later trim.
        public var freedBytes: UInt64
    }

    public struct VM: Codable, Equatable, Sendable {
        public var links: [VMLink]
        public var allocatedBytes: UInt64
        public var wastedBytes: UInt64
        /// Allocated bytes the final disk uses, over all allocated bytes of the chain.
        public var efficiency: Double
    }

    public struct Result: Codable, Equatable, Sendable {
        public var schemaVersion = 1
        public var kind = ResultKind.wasted
        public var recipe: String
        public var image: String
        public var oci: OCI?
        public var vm: VM?
        /// Where and from what it was measured.
        public var provenance: Provenance? = nil
    }

    public func run() throws -> Result {
        var result = Result(recipe: image.report.recipe, image: image.folder, provenance: .current())
        result.oci = try oci()
        result.vm = try vm()
        return result
    }

    /// Which step made each layer digest / chain link, from the report.
    var stepNames: [String: String] {
        var names: [String: String] = [:]
        let r = image.report
        if let d = r.base.container?.layerDigest { names[d] = "base" }
        for s in r.steps {
            if let d = s.container?.layerDigest { names[d] = "step \(s.index): \(s.instruction)" }
        }
        return names
    }

    func oci() throws -> OCI? {
        guard let path = image.ociLayout else { return nil }
        let layout = try ImageLayout(opening: path)
        let img = try layout.image(tag: image.tag)
        let a = try WastedBytes.analyze(img, in: layout, top: top)
        let names = stepNames
        let layers = img.manifest.layers.enumerated().map { i, d in
            OCILayer(index: i, step: names[d.digest.description] ?? "base", compressedBytes: d.size,
                     fileBytes: a.layers[i].fileBytes, hiddenBytes: a.layers[i].hiddenBytes, cacheBytes: a.layers[i].cacheBytes)
        }
        return OCI(layers: layers, offenders: a.offenders, totalFileBytes: a.totalFileBytes, wastedBytes: a.wastedBytes, efficiency: a.efficiency)
    }

    func vm() throws -> VM? {
        guard let chain = image.report.outputs.vmChain, let tipName = chain.last else { return nil }
        let tip = "\(image.folder)/\(tipName)"
        // An output brought back by `imgbench pull` has the flattened disk but not the chain.
        guard FileManager.default.fileExists(atPath: tip) else { return nil }
        let img = try QcowImage(path: tip)
        defer { try? img.close() }
        let map = try AllocationMap.compute(img)
        let free = try freeRanges(of: tip)
        var freed = [UInt64](repeating: 0, count: map.chain.count)
        // Of each link's allocated bytes that a later link hides, those hidden by a zero marking
        // over blocks the final filesystem has free: discarded (a trim), so freed, not overwritten.
        var discarded = [UInt64](repeating: 0, count: map.chain.count)
        let images = img.chain
        for e in map.extents {
            guard let d = e.depth else { continue }
            if e.data {
                freed[d] += free.overlap(e.start, e.length)
            } else if let below = images[d].backingImage {
                try Self.dataBelow(below, depth: d + 1, from: e.start, length: e.length) { depth, start, length in
                    let n = free.overlap(start, length)
                    freed[depth] += n
                    discarded[depth] += n
                }
            }
        }
        // Link names by the report: base, each step on the VM side, finalisation.
        var labels = ["base"] + image.report.steps.filter { $0.vm != nil }.map { "step \($0.index): \($0.instruction)" }
        if image.report.finalisation != nil { labels.append("finalisation") }
        var links: [VMLink] = []
        for (depth, link) in map.chain.enumerated().reversed() {
            let position = map.chain.count - 1 - depth
            let own = link.allocatedBytes + link.zeroBytes
            links.append(VMLink(path: chain.indices.contains(position) ? chain[position] : link.path,
                                step: labels.indices.contains(position) ? labels[position] : "link \(position)",
                                allocatedBytes: link.allocatedBytes,
                                overwrittenBytes: own > link.visibleBytes + discarded[depth] ? min(link.allocatedBytes, own - link.visibleBytes - discarded[depth]) : 0,
                                freedBytes: freed[depth]))
        }
        let allocated = links.reduce(0) { $0 + $1.allocatedBytes }
        let wasted = links.reduce(0) { $0 + $1.overwrittenBytes + $1.freedBytes }
        return VM(links: links, allocatedBytes: allocated, wastedBytes: wasted,
                  efficiency: allocated == 0 ? 1 : 1 - Double(wasted) / Double(allocated))
    }

    /// The runs of `[start, start+length)` that `image` (at `depth` in the chain) or an image below
    /// it holds as data, each with the depth that holds it: what a zero marking above hides.
    static func dataBelow(_ image: DiskImage, depth: Int, from start: UInt64, length: UInt64,
                          _ body: (Int, UInt64, UInt64) throws -> Void) throws {
        let end = min(start + length, image.virtualSize)
        var at = start
        while at < end {
            let s = try image.blockStatus(at: at, length: end - at)
            if case let .data(d) = s.kind { try body(depth + d, at, s.length) }
            at += s.length
        }
    }

    /// Byte ranges of the disk that its ext4 filesystem has free.
    struct FreeRanges {
        var ranges: [(start: UInt64, end: UInt64)]

        func overlap(_ start: UInt64, _ length: UInt64) -> UInt64 {
            let end = start + length
            var total: UInt64 = 0
            for r in ranges where r.end > start && r.start < end {
                total += min(end, r.end) - max(start, r.start)
            }
            return total
        }
    }

    func freeRanges(of disk: String) throws -> FreeRanges {
        try FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: workdir) }
        let raw = "\(workdir)/disk.raw"
        try Command.check("reading \(disk) as a raw disk", ["qemu-img", "convert", "-O", "raw", disk, raw])
        // A vm-boot=firmware disk: the filesystem is its root partition's, read at its offset.
        let root = try DiskLayout.read(try RawImage(path: raw))
        let out = try Command.check("reading the free blocks of \(disk)", ["dumpe2fs", root.map { "\(raw)?offset=\($0.offset)" } ?? raw])
        return try Self.parseFreeBlocks(out, disk: disk, offset: root?.offset ?? 0)
    }

    /// The `Block size:` and every group's `Free blocks:` ranges of dumpe2fs's output.
    /// `offset`: where the filesystem starts on the disk.
    static func parseFreeBlocks(_ text: String, disk: String, offset: UInt64 = 0) throws -> FreeRanges {
        var blockSize: UInt64?
        var ranges: [(UInt64, UInt64)] = []
        for line in text.split(separator: "\n") {
            let l = line.trimmingCharacters(in: .whitespaces)
            if l.hasPrefix("Block size:") {
                blockSize = UInt64(l.dropFirst("Block size:".count).trimmingCharacters(in: .whitespaces))
            } else if l.hasPrefix("Free blocks:") {
                for part in l.dropFirst("Free blocks:".count).split(separator: ",") {
                    let bounds = part.trimmingCharacters(in: .whitespaces).split(separator: "-").compactMap { UInt64($0) }
                    if bounds.count == 2 { ranges.append((bounds[0], bounds[1] + 1)) } else if bounds.count == 1 { ranges.append((bounds[0], bounds[0] + 1)) }
                }
            }
        }
        guard let bs = blockSize else { throw BuildError.invalid("\(disk): dumpe2fs printed no block size: not an ext filesystem at offset 0") }
        return FreeRanges(ranges: ranges.map { (start: offset + $0.0 * bs, end: offset + $0.1 * bs) })
    }
}
