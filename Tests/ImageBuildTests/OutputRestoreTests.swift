import Foundation
@testable import Host
@testable import ImageBuild
import Testing
import TestSupport

// A rebuild moves the previous build's unchanged disk and bundle into OUT.partial; an
// interruption before the swap must put them back before the handler removes OUT.partial.

@Test func anInterruptionBeforeTheSwapMovesTheKeptOutputsBack() throws {
    let dir = try TempDir("restore")
    let out = try dir.sub("out"), partial = try dir.sub("out.partial")
    try Data("disk".utf8).write(to: URL(fileURLWithPath: "\(out)/disk.qcow2"))
    try FileManager.default.createDirectory(atPath: "\(out)/bundle/rootfs", withIntermediateDirectories: true)
    let restore = OutputRestore()
    for name in ["disk.qcow2", "bundle"] {
        restore.willMove("\(out)/\(name)", to: "\(partial)/\(name)")
        try FileManager.default.moveItem(atPath: "\(out)/\(name)", toPath: "\(partial)/\(name)")
    }
    // What the Ctrl-C handler does first (Cleanup.runAll, here only this test's actions), then
    // the removal of the partial folder.
    let ran = Cleanup.run { $0.contains(dir.path) }
    #expect(ran.count == 2)
    try FileManager.default.removeItem(atPath: partial)
    #expect(FileManager.default.fileExists(atPath: "\(out)/disk.qcow2"))
    #expect(FileManager.default.fileExists(atPath: "\(out)/bundle/rootfs"))
    restore.undo()  // the build's own failure path afterwards: nothing left to move
    #expect(FileManager.default.fileExists(atPath: "\(out)/bundle/rootfs"))
}

@Test func afterTheSwapNothingIsMovedBack() throws {
    let dir = try TempDir("restore-swapped")
    let out = try dir.sub("out"), partial = try dir.sub("out.partial")
    try FileManager.default.createDirectory(atPath: "\(out)/bundle", withIntermediateDirectories: true)
    let restore = OutputRestore()
    restore.willMove("\(out)/bundle", to: "\(partial)/bundle")
    try FileManager.default.moveItem(atPath: "\(out)/bundle", toPath: "\(partial)/bundle")
    restore.forget()
    #expect(Cleanup.run { $0.contains(dir.path) }.isEmpty)
    #expect(FileManager.default.fileExists(atPath: "\(partial)/bundle"))
}
