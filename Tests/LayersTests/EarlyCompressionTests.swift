import Foundation
import Host
@testable import Layers
import OCI
import Testing
import TestSupport

@Suite("gzip members compressed while a step runs")
struct EarlyCompressionTests {
    /// A tree with small files around large ones: 300 KiB (one member of its own), 2.5 MiB
    /// (three: 1 MiB, 1 MiB, 0.5 MiB), and 100 KiB (below the size of its own members).
    func makeTree(_ root: String) throws {
        _ = try sh("""
            mkdir -p a/b; echo small > a/first
            head -c 307200 /dev/urandom > a/b/large
            seq 1 400000 | head -c 2621440 > a/b/larger
            head -c 102400 /dev/urandom > a/medium
            echo last > z
            """, cwd: root)
    }

    func blob(_ store: BlobStore, _ r: CaptureResult) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: store.path(of: r.layer.descriptor.digest)))
    }

    /// Watches `dir` until the members of `files` files are kept, at most `within` seconds.
    func precompress(_ dir: String, files count: Int, within: Double = 30, skipping: Set<String> = []) throws -> PrecompressedFiles {
        let files = PrecompressedFiles(level: 6)
        let early = EarlyCompression(watching: dir, into: files, threads: 2, interval: 0.05, settle: 0, skipping: skipping)
        let deadline = Date().addingTimeInterval(within)
        while files.stored.files < count && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        early.stop()
        return files
    }

    @Test("a large file's content starts a gzip member and is cut every MiB from its start; the stream stays one gzip file")
    func largeFilesHaveMembersOfTheirOwn() throws {
        let t = try TempDir("own-members")
        defer { t.cleanup() }
        let src = try t.sub("src")
        try makeTree(src)
        let store = BlobStore(root: try t.sub("store"))
        let r = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip, threads: 2))
        let members = try #require(ParallelGzip.members(of: try blob(store, r)))
        let raw = members.map(\.raw)
        // In tar order: a/b/large alone, a/b/larger's header (512 bytes), its three blocks, each
        // alone; a/medium (100 KiB) shares its member with the headers and small files around it.
        let mib = 1 << 20
        let own = [307_200, 512, mib, mib, 2_621_440 - 2 * mib]
        let at = try #require(raw.firstIndex(of: 307_200))
        #expect(Array(raw[at..<(at + 5)]) == own, "\(raw)")
        #expect(!raw.contains(102_400))
        #expect(raw.reduce(0, +) == Int(r.layer.uncompressedSize))
        let blobPath = store.path(of: r.layer.descriptor.digest)
        #expect(try run(["gzip", "-t", blobPath]).status == 0)
        let (status, out) = try sh("gzip -dc '\(blobPath)' | sha256sum")
        #expect(status == 0 && out.hasPrefix(r.layer.diffID.hex))
        // The same cuts on one thread.
        let one = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip, threads: 1))
        #expect(one.layer.descriptor == r.layer.descriptor)
    }

    @Test("members compressed beforehand give the same blob, byte for byte, and the capture takes them")
    func precompressedGiveTheSameBlob() throws {
        let t = try TempDir("early-same")
        defer { t.cleanup() }
        let src = try t.sub("src")
        try makeTree(src)
        let store = BlobStore(root: try t.sub("store"))
        let plain = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip, threads: 2))
        let files = try precompress(src, files: 2)
        #expect(files.stored.files == 2, "the two files of 128 KiB or more, not the 100 KiB one")
        #expect(files.stored.bytes == 307_200 + 2_621_440)
        var options = CaptureOptions(compression: .gzip, threads: 2)
        options.precompressed = files
        let early = try LayerCapture.capture(.tree(src), into: store, options: options)
        #expect(early.layer.descriptor == plain.layer.descriptor)
        #expect(early.layer.diffID == plain.layer.diffID)
        #expect(files.membersTaken == 4)
        // At another level the members are not taken: the capture compresses at its own.
        let before = files.membersTaken
        var other = CaptureOptions(compression: .gzip, level: 1, threads: 2)
        other.precompressed = files
        let fast = try LayerCapture.capture(.tree(src), into: store, options: other)
        #expect(fast.layer.descriptor == (try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip, level: 1, threads: 2))).layer.descriptor)
        #expect(files.membersTaken == before)
    }

    @Test("a file written again after its early compression is compressed by the capture, even with its size and mtime set back")
    func changedFilesAreCompressedAgain() throws {
        let t = try TempDir("early-changed")
        defer { t.cleanup() }
        let src = try t.sub("src")
        try makeTree(src)
        let store = BlobStore(root: try t.sub("store"))
        let files = try precompress(src, files: 2)
        // Rewritten in place, the same size, its mtime set back (the inode, size and mtime
        // match): only the second block's CRC-32 tells. The other file is renamed (its inode
        // keeps its members) and appended to (its size no longer matches).
        _ = try sh("""
            m=$(stat -c %y a/b/larger)
            printf 'CHANGED' | dd of=a/b/larger bs=1 seek=1500000 conv=notrunc status=none
            touch -d "$m" a/b/larger
            mv a/b/large a/b/renamed
            """, cwd: src)
        var options = CaptureOptions(compression: .gzip, threads: 2)
        options.precompressed = files
        let early = try LayerCapture.capture(.tree(src), into: store, options: options)
        let plain = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip, threads: 2))
        #expect(early.layer.descriptor == plain.layer.descriptor)
        // The renamed file's member and two of the three blocks of the rewritten one.
        #expect(files.membersTaken == 3)
        #expect(files.lookupCounts.found == 2 && files.lookupCounts.crcMismatches == 1, "\(files.lookupCounts)")
        _ = try sh("echo more >> a/b/renamed", cwd: src)
        let appended = try LayerCapture.capture(.tree(src), into: store, options: options)
        #expect(appended.layer.descriptor == (try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip, threads: 2))).layer.descriptor)
        #expect(files.membersTaken == 5, "only the rewritten file's two unchanged blocks")
    }

    @Test("the folders it is told to skip (apt's lists and downloads) are left to the capture")
    func skippedFoldersAreLeft() throws {
        let t = try TempDir("early-skip")
        defer { t.cleanup() }
        let src = try t.sub("src")
        try makeTree(src)
        _ = try sh("""
            mkdir -p var/lib/apt/lists var/cache/apt/archives var/lib/dpkg
            head -c 400000 /dev/urandom > var/lib/apt/lists/deb.debian.org_Packages
            head -c 400000 /dev/urandom > var/cache/apt/archives/x.deb
            head -c 400000 /dev/urandom > var/lib/dpkg/kept
            """, cwd: src)
        let files = try precompress(src, files: 4, within: 2, skipping: ["var/lib/apt/lists", "var/cache/apt"])
        #expect(files.stored.files == 3, "a/b/large, a/b/larger and var/lib/dpkg/kept")
        // The capture still has the skipped files, compressed then.
        let store = BlobStore(root: try t.sub("store"))
        var options = CaptureOptions(compression: .gzip, threads: 2)
        options.precompressed = files
        let r = try LayerCapture.capture(.tree(src), into: store, options: options)
        #expect(r.layer.descriptor == (try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip, threads: 2))).layer.descriptor)
    }

    @Test("a file system mounted inside the folder (mmdebstrap's /proc, /sys, /dev) is not walked (root)",
          .enabled(if: isRoot, "mounting needs root"))
    func otherFileSystemsAreLeft() throws {
        let t = try TempDir("early-mounts")
        defer { t.cleanup() }
        let src = try t.sub("src")
        try makeTree(src)
        let mnt = try t.sub("src/proc")
        try Mounts.mount(source: "tmpfs", target: mnt, type: "tmpfs", options: "size=2m")
        defer { try? Mounts.unmount(mnt) }
        _ = try sh("head -c 400000 /dev/urandom > proc/kcore", cwd: src)
        let files = try precompress(src, files: 3, within: 2)
        #expect(files.stored.files == 2, "a/b/large and a/b/larger, not the file on the tmpfs")
    }

    @Test("a walk looks again only at what changed since the last: a new file is found, an unchanged tree costs no lstat")
    func unchangedFoldersAreNotReadAgain() throws {
        let t = try TempDir("early-incremental")
        defer { t.cleanup() }
        let src = try t.sub("src")
        try makeTree(src)
        _ = try sh("find . -type d -exec touch -d '1 hour ago' {} +", cwd: src)
        let files = PrecompressedFiles(level: 6)
        let early = EarlyCompression(watching: src, into: files, threads: 2, interval: 0.05, settle: 0)
        defer { early.stop() }
        func waitFor(_ n: Int) {
            let deadline = Date().addingTimeInterval(30)
            while files.stored.files < n && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        }
        waitFor(2)
        func walks(_ n: Int) {
            let w = early.done.walks
            while early.done.walks < w + n { Thread.sleep(forTimeInterval: 0.05) }
        }
        // (the files being compressed are looked at again each walk until kept)
        walks(3)
        let looks = early.done.looks
        walks(5)
        #expect(early.done.looks == looks, "an unchanged tree: \(early.done)")
        _ = try sh("head -c 200000 /dev/urandom > a/b/new", cwd: src)
        waitFor(3)
        #expect(files.stored.files == 3)
        // A name copied up into a folder by overlayfs, which sets the folder's mtime back: new
        // names are looked at even where the mtime is unchanged.
        _ = try sh("m=$(stat -c %y a); head -c 200000 /dev/urandom > a/copied; touch -d \"$m\" a", cwd: src)
        waitFor(4)
        #expect(files.stored.files == 4)
    }

    @Test("a file still being written (its ctime newer than the settle time) is left to the capture; stop ends the walk")
    func unsettledFilesAreLeft() throws {
        let t = try TempDir("early-settle")
        defer { t.cleanup() }
        let src = try t.sub("src")
        try makeTree(src)
        let files = PrecompressedFiles(level: 6)
        let early = EarlyCompression(watching: src, into: files, threads: 1, interval: 0.05, settle: 3600)
        Thread.sleep(forTimeInterval: 0.5)
        let started = Date()
        early.stop()
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(files.stored.files == 0)
        early.stop()
    }
}
