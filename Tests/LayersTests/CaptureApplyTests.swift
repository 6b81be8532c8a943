import Foundation
import Host
@testable import Layers
import OCI
import Testing
import TestSupport

@Suite("capture and apply")
struct CaptureApplyTests {
    @Test("apply(capture(tree)) reproduces the tree exactly", arguments: LayerCompression.allCases)
    func roundTrip(compression: LayerCompression) throws {
        let t = try TempDir("roundtrip")
        defer { t.cleanup() }
        let src = try t.sub("src"), dst = try t.sub("dst")
        try makeRichTree(src)
        let store = BlobStore(root: try t.sub("store"))
        let result = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: compression))
        let blob = store.path(of: result.layer.descriptor.digest)
        let applied = try LayerApply.apply(layer: blob, to: dst, expecting: result.layer.descriptor.digest)
        #expect(applied.digest == result.layer.descriptor.digest)
        #expect(try describeTree(dst) == describeTree(src))
        // The diff_id is the digest of the decompressed stream.
        let (diffID, size) = try LayerReader.diffID(blob)
        #expect(diffID == result.layer.diffID)
        #expect(size == result.layer.uncompressedSize)
        #expect(try LayerReader.list(blob).entries.count == result.entries.count)
    }

    @Test("a gzip layer of several members (one per block) reads as one stream: gzip -t, tar and gzip -dc agree")
    func gzipValid() throws {
        let t = try TempDir("gzip")
        defer { t.cleanup() }
        let src = try t.sub("src")
        // Several compression blocks, compressible and not.
        _ = try sh("seq 1 1500000 > numbers; head -c 4000000 /dev/urandom > random; mkdir d; echo a > d/a", cwd: src)
        let store = BlobStore(root: try t.sub("store"))
        let r = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip, threads: 4))
        let blob = store.path(of: r.layer.descriptor.digest)
        #expect(try run(["gzip", "-t", blob]).status == 0)
        let listing = try run(["tar", "-tzf", blob])
        #expect(listing.status == 0)
        #expect(listing.output.split(separator: "\n") == ["d/", "d/a", "numbers", "random"])
        let (status, out) = try sh("gzip -dc '\(blob)' | sha256sum")
        #expect(status == 0 && out.hasPrefix(r.layer.diffID.hex))
        // On threads of its own at nice 10 (a base capture beside the steps): the same blob, and
        // the threads end with the capture.
        var lowered = CaptureOptions(compression: .gzip, threads: 2)
        lowered.nice = 10
        #expect(try LayerCapture.capture(.tree(src), into: store, options: lowered).layer.descriptor == r.layer.descriptor)
        // Its work runs at that nice value (field 19 of the thread's stat).
        let workers = LoweredWorkers(count: 2, nice: 10)
        final class Seen: @unchecked Sendable {
            let lock = NSLock()
            var nice: [String] = []
        }
        let seen = Seen()
        let done = DispatchGroup()
        for _ in 0..<4 {
            done.enter()
            workers.submit {
                let stat = (try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8)) ?? ""
                let fields = stat.split(separator: ")").last.map { $0.split(separator: " ").map(String.init) } ?? []
                seen.lock.withLock { seen.nice.append(fields.count > 16 ? fields[16] : "?") }
                done.leave()
            }
        }
        done.wait()
        workers.close()
        #expect(seen.nice == ["10", "10", "10", "10"], "\(seen.nice)")
        if haveTool("zstd") {
            let z = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .zstd))
            let zb = store.path(of: z.layer.descriptor.digest)
            #expect(try run(["zstd", "-t", "-q", zb]).status == 0)
            #expect(z.layer.diffID == r.layer.diffID)
        }
    }

    @Test("captures are deterministic, and SOURCE_DATE_EPOCH clamps every mtime")
    func deterministic() throws {
        let t = try TempDir("determinism")
        defer { t.cleanup() }
        let a = try t.sub("a"), b = try t.sub("b")
        _ = try sh("mkdir -p x/y; echo one > x/y/f; ln -s f x/y/l; echo two > z", cwd: a)
        _ = try sh("mkdir -p x/y; echo one > x/y/f; ln -s f x/y/l; echo two > z; sleep 1.1; touch x/y/f", cwd: b)
        let store = BlobStore(root: try t.sub("store"))
        let opts = CaptureOptions(compression: .gzip, sourceDateEpoch: 1_000_000_000)
        let ra = try LayerCapture.capture(.tree(a), into: store, options: opts)
        let rb = try LayerCapture.capture(.tree(b), into: store, options: opts)
        #expect(ra.layer.descriptor.digest == rb.layer.descriptor.digest)
        let ra2 = try LayerCapture.capture(.tree(a), into: store, options: CaptureOptions(compression: .gzip))
        let ra3 = try LayerCapture.capture(.tree(a), into: store, options: CaptureOptions(compression: .gzip))
        #expect(ra2.layer.descriptor.digest == ra3.layer.descriptor.digest)
        let listing = try LayerReader.list(store.path(of: ra.layer.descriptor.digest))
        #expect(listing.entries.allSatisfy { $0.mtime <= 1_000_000_000 })
        // One copy of a blob however often it is written.
        #expect(try store.list().count == 2)
    }

    @Test("an overlay upper directory's whiteouts and opaque directories become .wh. entries and apply (root)",
          .enabled(if: isRoot, "needs root to make 0/0 character devices and trusted.* xattrs"))
    func overlayWhiteouts() throws {
        let t = try TempDir("whiteouts")
        defer { t.cleanup() }
        let lower = try t.sub("lower"), upper = try t.sub("upper")
        _ = try sh("mkdir -p gone keep/sub; echo 1 > gone/f; echo 2 > keep/old; echo 3 > keep/sub/x; echo 4 > top", cwd: lower)
        _ = try sh("""
        mknod gone c 0 0; mkdir keep; mknod top c 0 0
        mkdir keep/sub; setfattr -n trusted.overlay.opaque -v y keep/sub; echo new > keep/sub/y
        """, cwd: upper)
        let store = BlobStore(root: try t.sub("store"))
        let r = try LayerCapture.capture(.overlayUpper(upper), into: store, options: CaptureOptions(compression: .none))
        let names = r.entries.map(\.tarName)
        #expect(names == [".wh.gone", ".wh.top", "keep/", "keep/sub/", "keep/sub/.wh..wh..opq", "keep/sub/y"])
        #expect(!r.entries.contains { $0.xattrs.keys.contains("trusted.overlay.opaque") })
        try LayerApply.apply(layer: store.path(of: r.layer.descriptor.digest), to: lower)
        let after = try sh("find . | sort", cwd: lower).output
        #expect(after == ".\n./keep\n./keep/old\n./keep/sub\n./keep/sub/y\n")
    }
}

@Suite("capture against a parent tree")
struct ParentCompareTests {
    @Test("a tree captured against a copy of its parent applies onto the parent to give the tree")
    func againstParent() throws {
        let t = try TempDir("parent"); defer { t.cleanup() }
        let parent = try t.sub("parent"), child = t.path + "/child"
        _ = try sh("mkdir -p a/b keep gone; echo 1 > a/b/f; echo 2 > keep/k; echo 3 > gone/g; echo 4 > top; echo 5 > same", cwd: parent)
        _ = try sh("find . -exec touch -h -d @1600000000 {} +", cwd: parent)
        #expect(try sh("cp -a '\(parent)' '\(child)'").status == 0)
        _ = try sh("echo changed > top; rm -rf gone; rm a/b/f; echo new > a/n; ln -s top link", cwd: child)
        let store = BlobStore(root: try t.sub("store"))
        let r = try LayerCapture.capture(.compare(root: child, baseline: try Baseline.scan(parent, inodes: false)), into: store)
        let names = r.entries.map(\.tarName)
        #expect(names == [".wh.gone", "a/", "a/b/", "a/b/.wh.f", "a/n", "link", "top"])
        try LayerApply.apply(layer: store.path(of: r.layer.descriptor.digest), to: parent)
        #expect(try describeTree(parent, includeDirectoryTimes: false) == describeTree(child, includeDirectoryTimes: false))
    }
}

@Suite("capture against a baseline of the same tree")
struct SameTreeCompareTests {
    /// ext4 gives a folder made right after one was removed the removed one's inode number, so
    /// the number alone took the new folder for the old one with its children deleted (whiteouts
    /// instead of an opaque folder). The birth time tells them apart; the reuse is made certain
    /// here by giving the baseline's record the new inode number and an older birth time.
    @Test("a folder removed and made again is opaque, even when its inode number comes back")
    func reusedInode() throws {
        let t = try TempDir("reuse"); defer { t.cleanup() }
        let root = try t.sub("root")
        _ = try sh("mkdir -p d/sub; echo a > d/a; echo b > d/sub/b", cwd: root)
        var baseline = try Baseline.scan(root)
        _ = try sh("rm -rf d; mkdir d; echo fresh > d/fresh", cwd: root)
        let now = try FileSystem.lstat(root + "/d")
        try #require(FileSystem.birthTime(root + "/d") != nil, "this filesystem keeps no birth times")
        var old = try #require(baseline.records["d"])
        old.ino = UInt64(now.st_ino)
        old.born = (old.born ?? 0) - 1_000_000_000
        baseline.records["d"] = old
        let names = try LayerCapture.entries(of: .compare(root: root, baseline: baseline)).map(\.tarName)
        #expect(names == ["d/", "d/.wh..wh..opq", "d/fresh"], "\(names)")
    }
}
