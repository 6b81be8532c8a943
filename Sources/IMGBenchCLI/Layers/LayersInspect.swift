import ArgumentParser
import Foundation
import Host
import Layers

struct LayersInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "List a layer file's entries, its digest, compression and diff_id.")

    @Argument(help: "A layer file (tar, tar.gz or tar.zst).", transform: absolutePath) var layer: String
    @Flag(help: "Print only the summary, not every entry.") var summary = false
    @Option(help: "table or json.") var format: OutputFormat = .table

    struct Report: Codable {
        var file: String
        var digest: String
        var diffID: String
        var compression: String
        var compressedBytes: Int64
        var uncompressedBytes: Int64
        var entryCount: Int
        var whiteouts: Int
        var entries: [Entry]?
    }

    struct Entry: Codable {
        var path: String
        var type: String
        var mode: String
        var uid: UInt32
        var gid: UInt32
        var size: Int64
        var mtime: Int64
        var link: String?
        var xattrs: [String]?
    }

    func run() throws {
        try reportingErrors {
            let listing = try LayerReader.list(layer)
            let (diffID, raw) = try LayerReader.diffID(layer)
            let entries = listing.entries.map { e -> Entry in
                var link: String?
                switch e.kind {
                case let .symlink(t), let .hardlink(t): link = t
                case let .characterDevice(ma, mi), let .blockDevice(ma, mi): link = "\(ma),\(mi)"
                default: break
                }
                return Entry(path: e.tarName, type: e.kindName, mode: String(format: "%04o", e.mode), uid: e.uid, gid: e.gid,
                             size: e.size, mtime: e.mtime, link: link, xattrs: e.xattrs.isEmpty ? nil : e.xattrs.keys.sorted())
            }
            let report = Report(file: layer, digest: listing.digest.description, diffID: diffID.description, compression: listing.compression,
                                compressedBytes: listing.size, uncompressedBytes: raw, entryCount: entries.count,
                                whiteouts: listing.entries.filter { $0.kind == .whiteout || $0.kind == .opaque }.count,
                                entries: summary ? nil : entries)
            switch format {
            case .json: printOut(try JSONOutput.string(report))
            case .table:
                let head: [(String, String)] = [
                    ("file", report.file), ("digest", report.digest), ("diff_id", report.diffID), ("compression", report.compression),
                    ("size", "\(ByteSize.format(UInt64(report.compressedBytes))) compressed, \(ByteSize.format(UInt64(report.uncompressedBytes))) uncompressed"),
                    ("entries", "\(report.entryCount) (\(report.whiteouts) whiteouts and opaque markers)"),
                ]
                let w = head.map(\.0.count).max() ?? 0
                printOut(head.map { $0.0.padding(toLength: w, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n"))
                if !summary {
                    var t = TextTable(header: ["type", "mode", "owner", "size", "path"])
                    t.rows = entries.map { e in
                        [e.type, e.mode, "\(e.uid):\(e.gid)", "\(e.size)", e.path + (e.link.map { " -> \($0)" } ?? "") + (e.xattrs.map { " [\($0.joined(separator: ","))]" } ?? "")]
                    }
                    printOut("")
                    printOut(t.render())
                }
            }
        }
    }
}
