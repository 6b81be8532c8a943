import Foundation
import Host
@testable import Layers
import OCI
import Testing
import TestSupport

@Suite("tree stamps and streamed applies")
struct TreeStampTests {
    /// A small tree: a folder, files, a symlink.
    func makeTree(_ t: TempDir) throws -> String {
        let root = try t.sub("tree")
        _ = try sh("mkdir -p etc/sub; echo one > etc/a; echo two > etc/sub/b; ln -s a etc/link", cwd: root)
        return root
    }

    @Test("a stamp holds until anything in the tree changes, however small", arguments: [
        "echo ONE > etc/a",                 // same size, new content
        "chmod 600 etc/sub/b",              // mode only
        "touch etc/new",                    // a new entry
        "rm etc/sub/b",                     // a removed entry
        "mv etc/sub/b etc/sub/c",           // a rename
        "ln etc/a etc/hard",                // a hard link (the file's ctime and a new name)
        "ln -sfn sub etc/link",             // a symlink replaced
    ])
    func detectsChange(_ change: String) throws {
        let t = try TempDir("stamp"); defer { t.cleanup() }
        let root = try makeTree(t)
        let stamp = try TreeStamp.take([root])
        #expect(stamp.entries == 6)
        #expect(stamp.holds(for: [root]), "the stamp does not hold for the tree it was taken of")
        // Reading changes nothing.
        _ = try sh("cat etc/a etc/sub/b > /dev/null; ls -R > /dev/null", cwd: root)
        #expect(stamp.holds(for: [root]))
        let r = try sh(change, cwd: root)
        try #require(r.status == 0, "\(change): \(r.output)")
        #expect(!stamp.holds(for: [root]), "not seen: \(change)")
    }

    @Test("a stamp of a missing path does not hold")
    func missing() throws {
        let t = try TempDir("stamp"); defer { t.cleanup() }
        let root = try makeTree(t)
        let stamp = try TreeStamp.take([root])
        try FileSystem.removeTree(root)
        #expect(!stamp.holds(for: [root]))
    }

    /// A sink whose bytes another thread applies to `root` as a layer stream, and a function that
    /// waits for that apply's outcome.
    func applyingStream(to root: String) throws -> (DescriptorSink, () -> Result<ApplyResult, Error>) {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        let readEnd = fds[0]
        let applied = Locked<Result<ApplyResult, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            applied.set(Result { try LayerApply.apply(stream: readEnd, named: "test stream", to: root) })
            done.signal()
        }
        return (DescriptorSink(fd: fds[1], name: "test stream"), {
            done.wait()
            return applied.get()!
        })
    }

    @Test("a layer applied from the tar its capture writes equals the layer applied from its blob")
    func streamedApply() throws {
        let t = try TempDir("stream"); defer { t.cleanup() }
        let src = try t.sub("src")
        // Several MiB, so that the pipe fills and the capture waits for the apply.
        _ = try sh("mkdir -p d/e; seq 1 800000 > d/numbers; head -c 3000000 /dev/urandom > d/e/random; ln -s numbers d/link; ln d/numbers d/hard", cwd: src)
        let store = BlobStore(root: try t.sub("store"))
        let streamed = try t.sub("streamed"), unpacked = try t.sub("unpacked")
        let (sink, applied) = try applyingStream(to: streamed)
        let r = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .gzip), tee: sink)
        let result = try applied().get()
        #expect(result.entries == r.entries.count)
        try LayerApply.apply(layer: store.path(of: r.layer.descriptor.digest), to: unpacked)
        let diff = try run(["diff", "-r", "--no-dereference", streamed, unpacked])
        #expect(diff.status == 0, "\(diff.output)")
        let same = try sh("stat -c '%n %s %a %h' d/numbers d/hard d/e/random d/link", cwd: streamed).output
        #expect(same == (try sh("stat -c '%n %s %a %h' d/numbers d/hard d/e/random d/link", cwd: unpacked).output))
    }

    @Test("a stream that fails to apply is still read to its end, so its writer finishes")
    func failedStreamIsDrained() throws {
        let t = try TempDir("stream"); defer { t.cleanup() }
        // The root does not exist: the first entry fails.
        let (sink, applied) = try applyingStream(to: t.path + "/missing/root")
        let src = try t.sub("src")
        _ = try sh("head -c 2000000 /dev/urandom > big", cwd: src)
        let store = BlobStore(root: try t.sub("store"))
        // Returns (it would hang on a full pipe if the failed apply stopped reading).
        _ = try LayerCapture.capture(.tree(src), into: store, options: CaptureOptions(compression: .none), tee: sink)
        let outcome = applied()
        #expect(throws: HostError.self) { try outcome.get() }
    }
}

/// A value shared with another thread.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func set(_ v: T) { lock.withLock { value = v } }
    func get() -> T { lock.withLock { value } }
}
