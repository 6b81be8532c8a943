import Foundation
import Testing
@testable import Layers

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

/// Files' own times differ between a tree made now and one from a layer clamped to an epoch.
func stripTimes(_ line: String) -> String {
    line.split(separator: " ").filter { !$0.hasPrefix("mtime=") }.joined(separator: " ")
}
