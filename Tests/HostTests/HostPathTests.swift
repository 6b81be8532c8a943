import Foundation
@testable import Host
import Synchronization
import Testing
import TestSupport

// Host paths given relative to the working folder (a relative --cache once left FUSE exports
// mounted), and a tree removed by two removers at once (a build's failure path and the Ctrl-C
// handler, which once both gave up half-way).

@Suite struct HostPathTests {
    @Test func relativePathsAreMadeAbsoluteAgainstTheWorkingFolder() {
        let cwd = FileManager.default.currentDirectoryPath
        #expect(LexicalPath.absolute("a/./b/../c") == LexicalPath.join(cwd, "a/c"))
        #expect(LexicalPath.absolute("/x/../y//z/") == "/y/z")
        #expect(LexicalPath.absolute("") == "", "an empty path stays empty, for its user to refuse")
    }

    @Test("a mount on a path relative to the working folder is found and unmounted (root)",
          .enabled(if: isRoot, "mounting needs root"))
    func relativeMountPoint() throws {
        let dir = try TempDir("relative-mount")
        let target = try dir.sub("mnt")
        let relative = relativePath(target, from: FileManager.default.currentDirectoryPath)
        try Mounts.mount(source: "tmpfs", target: relative, type: "tmpfs", options: "size=1m")
        #expect(Mounts.isMounted(relative) && Mounts.isMounted(target), "\(relative)")
        try Mounts.unmount(relative)
        #expect(!Mounts.isMounted(target), "\(target) is still mounted")
    }

    @Test func twoRemoversOfOneTreeBothSucceed() throws {
        let dir = try TempDir("remove")
        for d in 0..<20 {
            let sub = try dir.sub("tree/d\(d)/e")
            for f in 0..<100 { FileManager.default.createFile(atPath: "\(sub)/f\(f)", contents: nil) }
        }
        let tree = dir.file("tree")
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            do { try FileSystem.removeTree(tree) } catch { failures.withLock { $0.append("\(error)") } }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: tree))
    }
}
