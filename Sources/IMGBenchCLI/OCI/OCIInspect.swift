import ArgumentParser
import Layers
import OCI

struct OCIInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show an image's manifest, config and layers (with the bytes later layers waste of each); --verify checks every blob's digest.")

    @Argument(help: "DIR[:TAG] of an OCI layout (the tag may be left out when the layout holds one image).") var image: LayoutReference
    @Flag(help: "Read every blob and check its digest and size.") var verify = false
    @Option(help: "table or json.") var format: OutputFormat = .table

    struct Report: Codable {
        var tag: String?
        var manifest: Descriptor
        var config: ImageConfig
        var layers: [Layer]
        var verified: Bool
    }

    struct Layer: Codable {
        var digest: String
        var diffID: String
        var mediaType: String
        var size: Int64
        var createdBy: String?
        /// Wasted bytes of this layer (`WastedBytes.Layer.wastedBytes`): the two parts below.
        var wastedBytes: Int64
        /// Bytes of files this layer adds that later layers delete or replace.
        var hiddenLaterBytes: Int64
        /// Bytes of package caches and lists this layer leaves in the image.
        var cachesLeftBytes: Int64
    }

    func run() throws {
        try reportingErrors {
            let l = try ImageLayout(opening: image.path)
            let img = try l.image(tag: image.tag)
            if verify {
                try l.blobs.verify(img.manifestDescriptor)
                try l.blobs.verify(img.manifest.config)
                for d in img.manifest.layers { try l.blobs.verify(d) }
            }
            let steps = (img.config.history ?? []).filter { $0.emptyLayer != true }
            let wasted = try WastedBytes.perLayer(of: img, in: l)
            let layers = img.manifest.layers.enumerated().map { i, d in
                Layer(digest: d.digest.description, diffID: img.config.rootfs.diffIDs[i].description, mediaType: d.mediaType,
                      size: d.size, createdBy: i < steps.count ? steps[i].createdBy : nil, wastedBytes: wasted[i].wastedBytes,
                      hiddenLaterBytes: wasted[i].hiddenBytes, cachesLeftBytes: wasted[i].cacheBytes)
            }
            let report = Report(tag: img.tag, manifest: img.manifestDescriptor, config: img.config, layers: layers, verified: verify)
            switch format {
            case .json: printOut(try JSONOutput.string(report))
            case .table:
                let c = img.config.config
                var lines: [(String, String)] = [
                    ("image", image.description), ("manifest", img.manifestDescriptor.digest.description),
                    ("config", img.manifest.config.digest.description), ("platform", "\(img.config.os)/\(img.config.architecture)"),
                    ("created", img.config.created ?? ""),
                ]
                if let c {
                    if let v = c.entrypoint { lines.append(("entrypoint", v.joined(separator: " "))) }
                    if let v = c.cmd { lines.append(("cmd", v.joined(separator: " "))) }
                    if let v = c.workingDir { lines.append(("workdir", v)) }
                    if let v = c.user { lines.append(("user", v)) }
                    if let v = c.env { lines.append(("env", v.joined(separator: " "))) }
                    if let v = c.exposedPorts { lines.append(("ports", v.keys.sorted().joined(separator: " "))) }
                    if let v = c.volumes { lines.append(("volumes", v.keys.sorted().joined(separator: " "))) }
                    if let v = c.labels { lines.append(("labels", v.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))) }
                }
                lines.append(("history", "\(img.config.history?.count ?? 0) steps, \(img.manifest.layers.count) with layers"))
                if verify { lines.append(("verified", "every blob matches its digest")) }
                let w = lines.map(\.0.count).max() ?? 0
                printOut(lines.map { $0.0.padding(toLength: w, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n"))
                var t = TextTable(header: ["#", "digest", "size", "wasted", "(hidden later", "caches left)", "type", "created by"])
                t.rows = layers.enumerated().map { i, x in
                    ["\(i)", String(x.digest.prefix(19)), ByteSize.format(UInt64(x.size)), ByteSize.format(UInt64(x.wastedBytes)),
                     ByteSize.format(UInt64(x.hiddenLaterBytes)), ByteSize.format(UInt64(x.cachesLeftBytes)),
                     String(x.mediaType.split(separator: ".").last ?? ""), x.createdBy ?? ""]
                }
                printOut("")
                printOut(t.render())
            }
        }
    }
}
