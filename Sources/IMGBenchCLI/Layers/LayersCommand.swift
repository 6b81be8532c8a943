import ArgumentParser
import Layers

/// `imgbench layers …`: OCI layer tars on the command line.
public struct LayersCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "layers",
        abstract: "Capture a directory's changes as an OCI layer, apply a layer, list a layer's entries.",
        subcommands: [LayersCapture.self, LayersApply.self, LayersInspect.self])

    public init() {}
}

extension LayerCompression: ExpressibleByArgument {}

/// `DIR:TAG` or `DIR` naming an image in an OCI layout.
struct LayoutReference: ExpressibleByArgument {
    var path: String
    var tag: String?

    init?(argument: String) {
        if let i = argument.lastIndex(of: ":"), !argument[argument.index(after: i)...].contains("/"),
           argument.index(after: i) != argument.endIndex {
            path = absolutePath(String(argument[..<i]))
            tag = String(argument[argument.index(after: i)...])
        } else {
            path = absolutePath(argument)
            tag = nil
        }
        if path.isEmpty { return nil }
    }

    var description: String { tag.map { "\(path):\($0)" } ?? path }
}

/// One captured layer as `layers capture` reports it.
struct LayerSummary: Codable {
    var digest: String
    var diffID: String
    var mediaType: String
    var compressedBytes: Int64
    var uncompressedBytes: Int64
    var entries: Int
    var whiteouts: Int
    var seconds: Double
    var file: String?
    var image: String?

    init(_ r: CaptureResult, file: String?, image: String?) {
        digest = r.layer.descriptor.digest.description
        diffID = r.layer.diffID.description
        mediaType = r.layer.descriptor.mediaType
        compressedBytes = r.layer.descriptor.size
        uncompressedBytes = r.layer.uncompressedSize
        entries = r.entries.count
        whiteouts = r.entries.filter { $0.kind == .whiteout || $0.kind == .opaque }.count
        seconds = r.seconds
        self.file = file
        self.image = image
    }

    var table: String {
        var lines: [(String, String)] = [
            ("digest", digest), ("diff_id", diffID), ("media type", mediaType),
            ("compressed", "\(ByteSize.format(UInt64(compressedBytes))) (\(compressedBytes) bytes)"),
            ("uncompressed", "\(ByteSize.format(UInt64(uncompressedBytes))) (\(uncompressedBytes) bytes)"),
            ("entries", "\(entries) (\(whiteouts) whiteouts and opaque markers)"),
            ("time", String(format: "%.3f s (%.1f MiB/s uncompressed)", seconds, Double(uncompressedBytes) / 1_048_576 / max(seconds, 1e-9))),
        ]
        if let file { lines.append(("file", file)) }
        if let image { lines.append(("image", image)) }
        let w = lines.map(\.0.count).max() ?? 0
        return lines.map { $0.0.padding(toLength: w, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}
