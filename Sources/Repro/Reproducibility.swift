import Foundation
import Host
import ImageBuild
import Layers
import OCI
import QcowIO
import RecipePlan

/// What two builds of one recipe, made without the step cache under one SOURCE_DATE_EPOCH, have
/// in common: the OCI image (manifest, config and layer digests, and for a layer that differs,
/// the entries that do) and the flattened VM disk (for clusters that differ, the ext4 structures
/// and files they belong to).
public struct ReproReport: Codable, Equatable, Sendable {
    public var recipe: String
    public var sourceDateEpoch: Int?
    /// The two build folders.
    public var builds: [String]
    public var oci: OCISide?
    public var vm: VMSide?

    public struct OCISide: Codable, Equatable, Sendable {
        public var identical: Bool
        /// The image's manifest digest in each build.
        public var manifestDigests: [String]
        public var configDigests: [String]
        public var layers: [LayerPair]
    }

    public struct LayerPair: Codable, Equatable, Sendable {
        /// Bottom first, from 0.
        public var index: Int
        /// "base" or "step N: INSTRUCTION".
        public var step: String
        public var digests: [String]
        public var identical: Bool
        /// For a layer that differs: the entries that do, "PATH: what" (at most 50).
        public var differences: [String]?
    }

    public struct VMSide: Codable, Equatable, Sendable {
        public var identical: Bool
        /// The flattened disks compared.
        public var disks: [String]
        public var clusterSize: UInt64
        public var virtualSize: UInt64
        /// Indices (guest offset / cluster size) of the clusters whose contents differ.
        public var differingClusters: [UInt64]
        /// Filesystem blocks that differ, and the block size (4096 when the disk is no ext4).
        public var differingBlocks: Int
        public var blockSize: Int
        /// What the differing blocks belong to, most blocks first.
        public var owners: [Owner]
        /// The disk as each link of the chain leaves it (base first), compared: where the
        /// differences begin.
        public var links: [LinkPair]
    }

    public struct LinkPair: Codable, Equatable, Sendable {
        public var index: Int
        /// "base", "step N: INSTRUCTION" or "finalisation".
        public var step: String
        public var identical: Bool
        /// The first guest offset that differs.
        public var firstDifference: UInt64?
    }

    /// A structure or file of the filesystem and how many of the differing blocks and clusters
    /// are its. A block of the inode table counts for each of its inodes that differs.
    public struct Owner: Codable, Equatable, Sendable {
        public var what: String
        public var blocks: Int
        public var clusters: Int
    }

    public var ociIdentical: Bool { oci?.identical ?? true }
    public var vmIdentical: Bool { vm?.identical ?? true }
}

public enum Reproducibility {
    /// Builds the recipe twice without the step cache, into `options.output`/first and /second,
    /// and compares the two. `options.sourceDateEpoch` should be set: without it the image
    /// config carries the build's own time.
    public static func verify(recipe: Recipe, options: BuildOptions, events: BuildEvents) throws -> ReproReport {
        var runs: [String] = []
        for name in ["first", "second"] {
            var o = options
            o.noCache = true
            o.output = "\(options.output)/\(name)"
            events.note("verify-repro: \(name) build, without the step cache, into \(o.output)")
            _ = try Builder(recipe: recipe, options: o, events: events).run()
            runs.append(o.output)
        }
        events.note("verify-repro: comparing the two builds")
        return try compare(runs[0], runs[1], scratch: options.output, sourceDateEpoch: options.sourceDateEpoch)
    }

    /// Compares two build output folders (each with its report.json).
    public static func compare(_ first: String, _ second: String, scratch: String, sourceDateEpoch: Int? = nil) throws -> ReproReport {
        let a = try BuildReport.load("\(first)/report.json"), b = try BuildReport.load("\(second)/report.json")
        var report = ReproReport(recipe: a.recipe, sourceDateEpoch: sourceDateEpoch, builds: [first, second])
        if let la = a.outputs.ociLayout, let lb = b.outputs.ociLayout {
            report.oci = try compareOCI(a, layout: "\(first)/\(la)", b, layout: "\(second)/\(lb)")
        }
        if let da = a.outputs.vmDisk, let db = b.outputs.vmDisk {
            report.vm = try compareVM("\(first)/\(da)", "\(second)/\(db)", scratch: scratch)
            report.vm?.links = try compareChains(a, first, b, second)
        }
        return report
    }

    // MARK: - OCI

    static func compareOCI(_ a: BuildReport, layout pa: String, _ b: BuildReport, layout pb: String) throws -> ReproReport.OCISide {
        let la = try ImageLayout(opening: pa), lb = try ImageLayout(opening: pb)
        let ia = try la.image(tag: a.recipe), ib = try lb.image(tag: b.recipe)
        let names = layerNames(a, count: ia.manifest.layers.count)
        var layers: [ReproReport.LayerPair] = []
        for i in 0..<max(ia.manifest.layers.count, ib.manifest.layers.count) {
            let da = i < ia.manifest.layers.count ? ia.manifest.layers[i].digest : nil
            let db = i < ib.manifest.layers.count ? ib.manifest.layers[i].digest : nil
            var pair = ReproReport.LayerPair(index: i, step: i < names.count ? names[i] : "layer \(i)",
                                             digests: [da?.description ?? "none", db?.description ?? "none"], identical: da == db)
            if let da, let db, da != db {
                pair.differences = try entryDifferences(la.blobs.path(of: da), lb.blobs.path(of: db))
            }
            layers.append(pair)
        }
        let ma = ia.manifestDescriptor.digest.description, mb = ib.manifestDescriptor.digest.description
        return ReproReport.OCISide(identical: ma == mb, manifestDigests: [ma, mb],
                                   configDigests: [ia.manifest.config.digest.description, ib.manifest.config.digest.description],
                                   layers: layers)
    }

    /// What each layer of the image comes from: the base's layers, then each step that has a
    /// container layer.
    static func layerNames(_ r: BuildReport, count: Int) -> [String] {
        let steps = r.steps.filter { $0.container != nil }.map { "step \($0.index): \($0.instruction)" }
        return Array(repeating: "base", count: max(0, count - steps.count)) + steps
    }

    /// The entries of two layer blobs that differ, by path.
    static func entryDifferences(_ a: String, _ b: String, limit: Int = 50) throws -> [String] {
        let ea = try LayerReader.list(a).entries, eb = try LayerReader.list(b).entries
        let byPath = Dictionary(eb.map { ($0.path, $0) }, uniquingKeysWith: { x, _ in x })
        var out: [String] = []
        var seen = Set<String>()
        for e in ea {
            seen.insert(e.path)
            guard let o = byPath[e.path] else { out.append("/\(e.path): only in the first"); continue }
            var what: [String] = []
            if e.kind != o.kind { what.append("kind \(e.kindName) vs \(o.kindName)") }
            if e.mode != o.mode { what.append("mode \(String(e.mode, radix: 8)) vs \(String(o.mode, radix: 8))") }
            if e.uid != o.uid || e.gid != o.gid { what.append("owner \(e.uid):\(e.gid) vs \(o.uid):\(o.gid)") }
            if e.size != o.size { what.append("size \(e.size) vs \(o.size)") }
            if e.mtime != o.mtime { what.append("mtime \(e.mtime) vs \(o.mtime)") }
            if e.xattrs != o.xattrs { what.append("xattrs") }
            if !what.isEmpty { out.append("/\(e.path): " + what.joined(separator: ", ")) }
        }
        for e in eb where !seen.contains(e.path) { out.append("/\(e.path): only in the second") }
        if out.isEmpty {
            out.append(ea.map(\.path) == eb.map(\.path) ? "same entries and metadata: file contents differ" : "same entries in another order")
        }
        return out.count > limit ? Array(out.prefix(limit)) + ["... and \(out.count - limit) more"] : out
    }

    // MARK: - VM

    static func compareVM(_ pa: String, _ pb: String, scratch: String) throws -> ReproReport.VMSide {
        let a = try DiskImages.open(pa), b = try DiskImages.open(pb)
        let cluster = UInt64((a as? QcowImage)?.geometry.clusterSize ?? 65536)
        // A vm-boot=firmware disk: the filesystem is its root partition's.
        let root = try DiskLayout.read(a)
        let layout = try Ext4Layout.read(a, at: root?.offset ?? 0)
        let blockSize = UInt64(layout?.blockSize ?? 4096)
        let size = max(a.virtualSize, b.virtualSize)
        let chunk = max(cluster, 4 << 20)
        var clusters: [UInt64] = []
        var blocks: [UInt64] = []
        var at: UInt64 = 0
        while at < size {
            let n = min(chunk, size - at)
            if try quiet(a, at, n), try quiet(b, at, n) { at += n; continue }
            let ba = try readZeroFilled(a, at: at, count: Int(n)), bb = try readZeroFilled(b, at: at, count: Int(n))
            if ba != bb {
                var c: UInt64 = 0
                while c < n {
                    let end = Int(min(c + cluster, n))
                    if ba[Int(c)..<end] != bb[Int(c)..<end] {
                        clusters.append((at + c) / cluster)
                        var k = c
                        while k < UInt64(end) {
                            let e = Int(min(k + blockSize, UInt64(end)))
                            if ba[Int(k)..<e] != bb[Int(k)..<e] { blocks.append((at + k) / blockSize) }
                            k += blockSize
                        }
                    }
                    c += cluster
                }
            }
            at += n
        }
        var side = ReproReport.VMSide(identical: clusters.isEmpty && a.virtualSize == b.virtualSize, disks: [pa, pb], clusterSize: cluster,
                                      virtualSize: size, differingClusters: clusters, differingBlocks: blocks.count,
                                      blockSize: Int(blockSize), owners: [], links: [])
        if !blocks.isEmpty {
            side.owners = try owners(of: blocks, a: a, b: b, pa: pa, pb: pb, layout: layout, root: root, cluster: cluster, scratch: scratch)
        }
        return side
    }

    /// The guest contents of the chains link by link (each read through its backing files).
    static func compareChains(_ a: BuildReport, _ fa: String, _ b: BuildReport, _ fb: String) throws -> [ReproReport.LinkPair] {
        let ca = a.outputs.vmChain ?? [], cb = b.outputs.vmChain ?? []
        let names = ["base"] + a.steps.filter { $0.vm != nil }.map { "step \($0.index): \($0.instruction)" }
            + (a.finalisation != nil ? ["finalisation"] : [])
        return try zip(ca, cb).enumerated().map { i, pair in
            let result = try ImageComparison.compare(try DiskImages.open("\(fa)/\(pair.0)"), try DiskImages.open("\(fb)/\(pair.1)"))
            var offset: UInt64?
            if case let .differ(o) = result { offset = o }
            return ReproReport.LinkPair(index: i, step: i < names.count ? names[i] : "link \(i)", identical: result == .identical,
                                        firstDifference: offset)
        }
    }

    /// True when `[at, at+n)` reads as zeros without data in `img`.
    static func quiet(_ img: DiskImage, _ at: UInt64, _ n: UInt64) throws -> Bool {
        guard at < img.virtualSize else { return true }
        let len = min(n, img.virtualSize - at)
        let s = try img.blockStatus(at: at, length: len)
        if case .data = s.kind { return false }
        return s.length >= len
    }

    static func readZeroFilled(_ img: DiskImage, at: UInt64, count: Int) throws -> [UInt8] {
        guard at < img.virtualSize else { return [UInt8](repeating: 0, count: count) }
        let inside = Int(min(UInt64(count), img.virtualSize - at))
        var out = try img.read(count: inside, at: at)
        if inside < count { out += [UInt8](repeating: 0, count: count - inside) }
        return out
    }

    /// Names what the differing blocks belong to: ext4 structures from the layout, inodes of
    /// differing inode-table slots and owners of data blocks through debugfs (icheck, ncheck) on
    /// raw copies of both disks.
    static func owners(of blocks: [UInt64], a: DiskImage, b: DiskImage, pa: String, pb: String, layout: Ext4Layout?,
                       root: DiskLayout.Partition? = nil, cluster: UInt64, scratch: String) throws -> [ReproReport.Owner] {
        var tally: [String: (blocks: Int, clusters: Set<UInt64>)] = [:]
        func count(_ what: String, _ block: UInt64, _ bs: UInt64) {
            tally[what, default: (0, [])].blocks += 1
            tally[what, default: (0, [])].clusters.insert(block * bs / cluster)
        }
        guard let layout else {
            for blk in blocks { count("no ext4 filesystem: raw bytes", blk, 4096) }
            return summarise(tally)
        }
        let bs = UInt64(layout.blockSize)
        // Blocks are the disk's; the filesystem's start `first` blocks later (a firmware disk's
        // root partition), and what lies outside it is the partition table, the BIOS boot
        // partition (GRUB's core.img) or the ESP.
        let first = (root?.offset ?? 0) / bs, past = root.map { $0.end / bs } ?? UInt64.max
        var dataBlocks: [UInt64] = []
        var inodeSlots: [(UInt64, UInt64)] = []  // (block, inode)
        for blk in blocks {
            guard blk >= first && blk < past else {
                count("outside the root filesystem: partition table, BIOS boot partition or ESP", blk, bs)
                continue
            }
            switch layout.region(of: blk - first) {
            case let .superblock(g): count(g == 0 ? "superblock and group descriptors" : "backup superblock and descriptors (group \(g))", blk, bs)
            case let .blockBitmap(g): count("block bitmap (group \(g))", blk, bs)
            case let .inodeBitmap(g): count("inode bitmap (group \(g))", blk, bs)
            case let .inodeTable(_, first):
                // Which inodes of the block differ.
                let ra = try a.read(count: layout.blockSize, at: blk * bs), rb = try b.read(count: layout.blockSize, at: blk * bs)
                var any = false
                for slot in 0..<Int(layout.inodesPerBlock) {
                    let r = (slot * layout.inodeSize)..<((slot + 1) * layout.inodeSize)
                    if ra[r] != rb[r] { inodeSlots.append((blk, first + UInt64(slot))); any = true }
                }
                if !any { count("inode table", blk, bs) }
            case .data: dataBlocks.append(blk)
            }
        }
        let fs = try Ext4Names(disks: [pa, pb], scratch: scratch)
        defer { fs.remove() }
        let inodes = Set(inodeSlots.map(\.1))
        let icheck = try fs.icheck(dataBlocks.map { $0 - first })
        let names = try fs.ncheck(inodes.union(icheck.flatMap { $0.values }))
        for (blk, ino) in inodeSlots {
            count("inode table: \(fs.describe(ino, names: names))", blk, bs)
        }
        for blk in dataBlocks {
            let owners = (0..<2).map { icheck[$0][blk - first] }
            let text: String
            if owners[0] == owners[1] {
                text = owners[0].map { "data of \(fs.describe($0, names: names))" } ?? "free space (no inode uses the block)"
            } else {
                let d = owners.map { $0.map { fs.describe($0, names: names) } ?? "free space" }
                text = "data of \(d[0]) in the first build, \(d[1]) in the second"
            }
            count(text, blk, bs)
        }
        return summarise(tally)
    }

    static func summarise(_ tally: [String: (blocks: Int, clusters: Set<UInt64>)]) -> [ReproReport.Owner] {
        tally.map { ReproReport.Owner(what: $0.key, blocks: $0.value.blocks, clusters: $0.value.clusters.count) }
            .sorted { ($0.blocks, $1.what) > ($1.blocks, $0.what) }
    }
}

/// Names blocks and inodes of two ext4 disks with debugfs, on raw copies of them (removed by
/// `remove()`, or on Ctrl-C).
final class Ext4Names {
    let raws: [String]
    private let cleanup: Int

    init(disks: [String], scratch: String) throws {
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let names = disks.indices.map { "\(scratch)/.verify-repro-\(getpid())-\($0).raw" }
        cleanup = Cleanup.register("remove the raw copies \(names.joined(separator: ", "))") { for r in names { unlink(r) } }
        raws = names
        do {
            for (d, raw) in zip(disks, names) {
                try Command.check("a raw copy of \(d) for debugfs", ["qemu-img", "convert", "-O", "raw", d, raw])
            }
            // debugfs reads a firmware disk's root partition at its offset.
            devices = try names.map { raw in try DiskLayout.read(try RawImage(path: raw)).map { "\(raw)?offset=\($0.offset)" } ?? raw }
        } catch {
            remove()
            throw error
        }
    }

    /// What debugfs opens for each raw copy: the copy, or its root partition (`raw?offset=N`).
    private var devices: [String] = []

    func device(_ raw: String) -> String { raws.firstIndex(of: raw).map { devices[$0] } ?? raw }

    func remove() { Cleanup.run(cleanup) }

    /// debugfs commands run from a file on each raw copy; the output lines of each.
    func debugfs(_ commands: [String], on raw: String, what: String = "naming blocks with debugfs") throws -> [Substring] {
        let cmdFile = raw + ".cmds"
        try Data((commands.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: cmdFile))
        defer { unlink(cmdFile) }
        let r = try Command.run(["debugfs", "-f", cmdFile, device(raw)], outputLimit: 64 << 20)
        guard r.status == 0 else {
            throw HostError.commandFailed(what: what, argv: ["debugfs", "-f", cmdFile, device(raw)], status: r.status,
                                           outputTail: Command.tail(r.output, lines: 10))
        }
        return r.output.split(separator: "\n")
    }

    /// For each disk, block -> inode for the blocks some inode uses.
    func icheck(_ blocks: [UInt64]) throws -> [[UInt64: UInt64]] {
        guard !blocks.isEmpty else { return raws.map { _ in [:] } }
        return try raws.map { raw in
            // "BLOCK<TAB>INODE" or "BLOCK<TAB><block not found>"
            var out: [UInt64: UInt64] = [:]
            let cmds = stride(from: 0, to: blocks.count, by: 512).map { "icheck " + blocks[$0..<min($0 + 512, blocks.count)].map(String.init).joined(separator: " ") }
            for line in try debugfs(cmds, on: raw) {
                let f = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
                if f.count == 2, let blk = UInt64(f[0]), let ino = UInt64(f[1]) { out[blk] = ino }
            }
            return out
        }
    }

    /// inode -> path, from the first disk, then the second for inodes the first lacks.
    func ncheck(_ inodes: Set<UInt64>) throws -> [UInt64: String] {
        var out: [UInt64: String] = [:]
        for raw in raws {
            let want = inodes.filter { out[$0] == nil }.sorted()
            guard !want.isEmpty else { break }
            let cmds = stride(from: 0, to: want.count, by: 512).map { "ncheck -c " + want[$0..<min($0 + 512, want.count)].map(String.init).joined(separator: " ") }
            for line in try debugfs(cmds, on: raw) {
                // "INODE<TAB>PATH"
                guard let tab = line.firstIndex(of: "\t"), let ino = UInt64(line[..<tab]), out[ino] == nil else { continue }
                // debugfs writes the root's children as "//name".
                var path = String(line[line.index(after: tab)...])
                while path.hasPrefix("//") { path.removeFirst() }
                out[ino] = path
            }
        }
        return out
    }

    func describe(_ inode: UInt64, names: [UInt64: String]) -> String {
        switch inode {
        case 2: return "/ (inode 2)"
        case 7: return "the reserved descriptor blocks (resize inode 7)"
        case 8: return "the journal (inode 8)"
        default:
            if let n = names[inode] { return "\(n) (inode \(inode))" }
            return inode < 11 ? "reserved inode \(inode)" : "inode \(inode) (unused or unnamed)"
        }
    }
}
