import Foundation
import Host
import OCI
import RecipePlan

/// The local image store: every build that makes the container image registers it under its
/// name (`-t NAME[:TAG]`, default the recipe folder's name, tag `latest`), with the VM chain it
/// made, so that `FROM NAME:TAG` in a later recipe builds on it: its OCI image is the container
/// side's base, and the VM side continues its chain (new links on top of its finalised disk).
///
/// ```
/// CACHE/images/refs/HEX.json      the entry of NAME:TAG (HEX: the first 32 hex digits of the
///                                 name's SHA-256), replaced whole by the next build of that name
/// CACHE/images/layouts/HEX/       the OCI image, a layout tagged `image` (HEX: the manifest
///                                 digest's), its blobs hard links into the container cache
/// ```
/// An entry names its VM chain by the cache folder of its disk layout and the link file names,
/// base first; the links stay in the VM cache, checked as any link is when used.
public struct LocalImage: Codable, Equatable, Sendable {
    /// `NAME:TAG`, as registered.
    public var reference: String
    public var manifest: String
    /// The layout's folder, relative to the cache.
    public var layout: String
    public var vm: VMChain?
    public var recipe: String
    public var created: String

    /// The key of a base that is this image: its manifest and its VM chain.
    public var baseKey: String {
        "local-image \(manifest)" + (vm.map { "\nvm \($0.folder)/\($0.links.joined(separator: ","))" } ?? "")
    }

    public struct VMChain: Codable, Equatable, Sendable {
        /// The VM cache folder of the chain's disk layout, relative to the cache.
        public var folder: String
        /// The links' file names, base first; the last is the finalised disk.
        public var links: [String]
    }
}

public enum LocalImages {
    /// The tag of the image in its layout.
    static let layoutTag = "image"

    static func folder(cache: String) -> String { "\(cache)/images" }

    static func refPath(cache: String, name: String) -> String {
        "\(folder(cache: cache))/refs/\(BuildPlan.digest([name]).prefix(32)).json"
    }

    /// The entry of `name` (`NAME:TAG`, as `RecipeParser.storeName` spells it), when the store
    /// holds it and its layout is there.
    public static func find(_ name: String, cache: String) -> LocalImage? {
        guard let data = FileManager.default.contents(atPath: refPath(cache: cache, name: name)),
              let image = try? JSONDecoder().decode(LocalImage.self, from: data), image.reference == name,
              (try? ImageLayout(opening: "\(cache)/\(image.layout)").resolve(tag: layoutTag)) != nil else { return nil }
        return image
    }

    /// Registers a build's image under `name`: the layout written from the container pass (its
    /// blobs linked, not copied), then the entry, written whole and renamed into place.
    static func register(name: String, cache: String, container: ContainerPass, config: ContainerConfig, vm: VMPass?,
                         recipe: String) throws -> LocalImage {
        let layouts = "\(folder(cache: cache))/layouts"
        try FileSystem.makeDirectories(layouts)
        try FileSystem.makeDirectories("\(folder(cache: cache))/refs")
        let tmp = "\(layouts)/tmp-\(UUID().uuidString.lowercased())"
        let digest = try BuildCache.makingPartial(tmp) { try container.export(layout: tmp, tag: layoutTag, config: config) }
        let hex = String(digest.dropFirst("sha256:".count).prefix(32))
        let dir = "\(layouts)/\(hex)"
        // A layout is renamed into place whole, so one that is there is complete: the same image
        // registered before (or by another build at once), kept as it is.
        do {
            if !FileSystem.exists(dir) { try FileSystem.rename(tmp, to: dir) }
        } catch where FileSystem.exists(dir) {
        }
        try? FileSystem.removeTree(tmp)
        var chain: LocalImage.VMChain?
        if let vm {
            let rel = String(vm.folder.dropFirst(cache.count + 1))
            chain = LocalImage.VMChain(folder: rel, links: vm.chain.map { ($0 as NSString).lastPathComponent })
        }
        let image = LocalImage(reference: name, manifest: digest, layout: "images/layouts/\(hex)", vm: chain, recipe: recipe,
                               created: ISO8601DateFormatter().string(from: Date()))
        let path = refPath(cache: cache, name: name)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // A partial file of its own: two builds of one name may register at once (the last wins).
        let partial = "\(path).partial-\(UUID().uuidString.lowercased())"
        try BuildCache.makingPartial(partial) {
            try enc.encode(image).write(to: URL(fileURLWithPath: partial))
            try FileSystem.rename(partial, to: path)
        }
        return image
    }
}
