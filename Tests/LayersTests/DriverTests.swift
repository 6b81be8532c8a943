import Foundation
import Host
@testable import Layers
import OCI
import Testing
import TestSupport

/// The lower layer every driver starts from.
func makeDriverBase(_ root: String) throws {
    let r = try sh("""
    mkdir -p etc bin olddir/sub
    echo keep > etc/keep; echo mod > etc/modified; echo del > etc/deleted; echo ren > etc/renamed-from
    echo chm > etc/chmodded; echo x > etc/xattr; echo old > olddir/a; echo old > olddir/sub/b
    printf '#!/bin/sh\\n' > bin/tool; chmod 755 bin/tool
    find . -exec touch -h -d @1600000000 {} +
    """, cwd: root)
    if r.status != 0 { throw LayersError.invalidArgument(r.output) }
}

/// The same step on every driver: create, modify, delete a lower file, remove a directory and
/// make it again, rename, hardlink, symlink, chmod, setuid, xattr, fifo.
let driverScript = """
echo new > created
echo more >> etc/modified
rm etc/deleted
rm -rf olddir && mkdir olddir && echo fresh > olddir/fresh
mv etc/renamed-from etc/renamed-to
echo linked > hl-a && ln hl-a hl-b
ln -s created sym
chmod 640 etc/chmodded
chmod u+s bin/tool
setfattr -n user.tag -v v1 etc/xattr
mkfifo fifo
"""

/// unionfs-fuse has no extended attributes: its step leaves the setfattr out.
func runScript(_ root: String, xattrs: Bool = true) throws {
    let script = xattrs ? driverScript : driverScript.split(separator: "\n").filter { !$0.hasPrefix("setfattr") }.joined(separator: "\n")
    let r = try sh(script, cwd: root)
    if r.status != 0 { throw LayersError.invalidArgument("script failed in \(root): \(r.output)") }
}

@Suite("storage drivers", .serialized)
struct DriverTests {
    @Test("imgbench's driver list: each says whether it works and why; aufs names the alternatives")
    func probe() {
        for name in StorageDrivers.names {
            let s = StorageDrivers.probe(name)
            #expect(!s.reason.isEmpty && !s.summary.isEmpty)
        }
        let aufs = StorageDrivers.probe("aufs")
        if !Mounts.kernelHas("aufs") {
            #expect(!aufs.works)
            #expect(aufs.reason.contains("no aufs") && aufs.reason.contains("overlay"))
            #expect(throws: LayersError.self) { try StorageDrivers.open("aufs", store: NSTemporaryDirectory()) }
        }
        #expect(StorageDrivers.probe("unionfs").summary.contains("not aufs"))
        #expect(StorageDrivers.probe("vfs").works)
    }

    @Test("the same script on every working driver gives the same entries; overlay and vfs the same digest (root)",
          .enabled(if: isRoot, "the drivers mount filesystems, which needs root"))
    func sameLayerEverywhere() throws {
        let t = try TempDir("drivers"); defer { t.cleanup() }
        let base = try t.sub("base")
        try makeDriverBase(base)
        let baseBefore = try describeTree(base, includeDirectoryTimes: true)
        let options = CaptureOptions(compression: .gzip, sourceDateEpoch: 1_700_000_000)
        var reports: [String: DriverReport] = [:]
        for name in StorageDrivers.names where StorageDrivers.probe(name).works {
            let layout = try ImageLayout.create(at: t.path + "/layout-" + name)
            let xattrs = name != "unionfs"
            let r = try DriverTrial.run(driver: name, store: try t.sub("store-" + name), base: base, options: options, layout: layout) { root in
                try runScript(root, xattrs: xattrs)
            }
            #expect(r.error == nil, "\(name): \(r.error ?? "")")
            reports[name] = r
            // The layer applied on the base gives what the driver showed as its root.
            if let d = r.layerDigest {
                let applied = try t.sub("applied-" + name)
                try FileSystem.copyTree(from: base, to: applied)
                try LayerApply.apply(layer: layout.blobs.path(of: try Digest(parsing: d)), to: applied)
                let expected = try t.sub("expected-" + name)
                try FileSystem.copyTree(from: base, to: expected)
                try runScript(expected, xattrs: xattrs)
                #expect(try describeTree(applied, includeDirectoryTimes: false).map(stripTimes)
                        == describeTree(expected, includeDirectoryTimes: false).map(stripTimes), "\(name)")
            }
        }
        // Every mount released.
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        #expect(!mounts.contains(t.path))
        // Each driver's base layer is the tree copied in (importTree): the step never wrote into
        // the tree itself.
        #expect(try describeTree(base, includeDirectoryTimes: true) == baseBefore)

        let vfs = try #require(reports["vfs"])
        let expectedEntries = [
            "bin/ dir", "bin/tool file", "created file", "etc/ dir", "etc/.wh.deleted whiteout", "etc/.wh.renamed-from whiteout",
            "etc/chmodded file", "etc/modified file", "etc/renamed-to file", "etc/xattr file", "fifo fifo", "hl-a file",
            "hl-b hardlink", "olddir/ dir", "olddir/.wh..wh..opq opaque", "olddir/fresh file", "sym symlink",
        ]
        #expect(vfs.entries == expectedEntries)
        for (name, r) in reports {
            #expect(r.entries == expectedEntries.filter { name != "unionfs" || $0 != "etc/xattr file" }, "\(name)")
            #expect((r.cloneBytes ?? 0) > 0 || name == "btrfs", "\(name)")
        }
        if let overlay = reports["overlay"] {
            #expect(overlay.layerDigest == vfs.layerDigest)
            #expect(overlay.diffID == vfs.diffID)
        }
    }
}

@Suite("a base by reference", .serialized)
struct ReferencedTreeTests {
    /// Every entry's ctime, which a hard link or a copy-up into the folder would change.
    func ctimes(_ root: String) throws -> String {
        try sh("find . -printf '%C@ %p\\n' | sort", cwd: root).output
    }

    @Test("overlay stacks on the folder itself: the same layer as on a copy, nothing written in it, and a folder made again is refused (root)",
          .enabled(if: isRoot, "overlay mounts need root"))
    func overlayStandsOnTheFolder() throws {
        let t = try TempDir("referenced"); defer { t.cleanup() }
        let base = try t.sub("base")
        try makeDriverBase(base)
        let (tree, times) = (try describeTree(base, includeDirectoryTimes: true), try ctimes(base))
        let options = CaptureOptions(compression: .gzip, sourceDateEpoch: 1_700_000_000)
        var digests: [String] = []
        for referenced in [true, false] {
            let driver = try StorageDrivers.open("overlay", store: try t.sub(referenced ? "by-reference" : "copied"))
            defer { try? driver.close() }
            if referenced { try driver.referenceTree("base", tree: base) } else { try driver.importTree("base", from: base) }
            #expect((driver.referencedTree("base") != nil) == referenced)
            let root = try driver.prepare("step", parent: "base")
            try runScript(root)
            digests.append(try driver.capture("step", into: BlobStore(root: t.path + "/blobs"), options: options).layer.descriptor.digest.description)
            try driver.remove("step")
            try driver.remove("base")
        }
        #expect(digests[0] == digests[1], "the step's layer is the same on the folder as on a copy of it")
        #expect(try describeTree(base, includeDirectoryTimes: true) == tree)
        #expect(try ctimes(base) == times, "nothing in the folder was written, linked or copied up")

        // The folder made again at the same path (a base root rebuilt): the layer is refused.
        let driver = try StorageDrivers.open("overlay", store: try t.sub("again"))
        defer { try? driver.close() }
        try driver.referenceTree("base", tree: base)
        _ = try driver.chain("base")
        try FileManager.default.moveItem(atPath: base, toPath: t.path + "/old-base")
        try FileSystem.copyTree(from: t.path + "/old-base", to: base)
        #expect(throws: LayersError.self) { try driver.chain("base") }
        #expect(throws: LayersError.self) { _ = try driver.prepare("step", parent: "base") }
        try driver.remove("base")
        #expect(FileManager.default.fileExists(atPath: base + "/etc/keep"), "removing the layer leaves its folder")
    }

    @Test("vfs copies: a driver that writes into its layers never stands on the folder")
    func vfsCopies() throws {
        let t = try TempDir("referenced-vfs"); defer { t.cleanup() }
        let base = try t.sub("base")
        try makeDriverBase(base)
        let driver = try StorageDrivers.open("vfs", store: try t.sub("store"))
        try driver.referenceTree("base", tree: base)
        #expect(driver.referencedTree("base") == nil)
        try FileSystem.removeTree(base)
        _ = try driver.chain("base")
        try driver.remove("base")
    }
}

/// Files' own times differ between a tree made now and one from a layer clamped to an epoch.
func stripTimes(_ line: String) -> String {
    line.split(separator: " ").filter { !$0.hasPrefix("mtime=") }.joined(separator: " ")
}

@Suite("images onto drivers", .serialized)
struct DriverImportTests {
    @Test("an image with whiteouts unpacked onto each working driver gives the tree a plain apply gives (root)",
          .enabled(if: isRoot, "the drivers mount filesystems, which needs root"))
    func importOntoDrivers() throws {
        let t = try TempDir("import"); defer { t.cleanup() }
        let base = try t.sub("base")
        try makeDriverBase(base)
        let layout = try ImageLayout.create(at: t.path + "/layout")
        let l1 = try LayerCapture.capture(.tree(base), into: layout.blobs).layer
        // The second layer is the driver script's diff, taken on vfs.
        let step = try DriverTrial.run(driver: "vfs", store: try t.sub("vfs-store"), base: base, options: .init(), layout: layout) {
            try runScript($0)
        }
        let d2 = try Digest(parsing: try #require(step.layerDigest))
        let l2 = StoredLayer(descriptor: Descriptor(mediaType: MediaType.layerGzip, digest: d2, size: try #require(step.layerBytes)),
                             diffID: try Digest(parsing: try #require(step.diffID)), uncompressedSize: 0)
        try layout.writeImage(layers: [l1, l2], config: nil, history: [History(createdBy: "base"), History(createdBy: "step")],
                              created: nil, tag: "img")
        let image = try layout.image(tag: "img")
        let plain = try t.sub("plain")
        for d in image.manifest.layers { try LayerApply.apply(layer: layout.blobs.path(of: d.digest), to: plain) }
        let expected = try describeTree(plain, includeDirectoryTimes: false)
        #expect(expected.count > 10)
        // umoci reads the whiteouts and the opaque directory the same way.
        if haveTool("umoci") {
            let u = try run(["umoci", "unpack", "--image", layout.path + ":img", t.path + "/bundle"])
            #expect(u.status == 0, "\(u.output)")
            #expect(try describeTree(t.path + "/bundle/rootfs", includeDirectoryTimes: false) == expected)
        }

        // unionfs-fuse is left out: it has no extended attributes, which this image carries (its
        // apply fails naming the entry and the xattr, as it should).
        for name in StorageDrivers.names where StorageDrivers.probe(name).works && name != "unionfs" {
            let driver = try StorageDrivers.open(name, store: t.path + "/store-" + name)
            defer { try? driver.close() }
            let ids = try DriverImport.importImage(image, from: layout, into: driver)
            #expect(ids.count == 2)
            #expect(ids[0] == l1.diffID.hex)
            // Importing again reuses the layers; a container's root on the top shows the image.
            #expect(try DriverImport.importImage(image, from: layout, into: driver) == ids)
            let root = try driver.prepare("container", parent: ids[1])
            #expect(try describeTree(root, includeDirectoryTimes: false) == expected, "\(name)")
            try driver.remove("container")
            for id in ids.reversed() { try driver.remove(id) }
        }
    }
}
