import ArgumentParser
import OCI

struct OCIList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the images of an OCI layout, with their sizes.")

    @Argument(help: "The layout directory.", transform: absolutePath) var layout: String
    @Option(help: "table or json.") var format: OutputFormat = .table

    struct Row: Codable {
        var tag: String?
        var manifest: String
        var layers: Int
        var compressedBytes: UInt64
        var created: String?
        var platform: String
    }

    func run() throws {
        try reportingErrors {
            let l = try ImageLayout(opening: layout)
            let rows = try l.images().map { img in
                Row(tag: img.tag, manifest: img.manifestDescriptor.digest.description, layers: img.manifest.layers.count,
                    compressedBytes: img.manifest.layers.totalSize, created: img.config.created,
                    platform: "\(img.config.os)/\(img.config.architecture)")
            }
            switch format {
            case .json: printOut(try JSONOutput.string(rows))
            case .table:
                var t = TextTable(header: ["tag", "manifest", "layers", "size", "platform", "created"])
                t.rows = rows.map { [$0.tag ?? "<none>", String($0.manifest.prefix(19)), "\($0.layers)", ByteSize.format($0.compressedBytes), $0.platform, $0.created ?? ""] }
                printOut(t.render())
            }
        }
    }
}
