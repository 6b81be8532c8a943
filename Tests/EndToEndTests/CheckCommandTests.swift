import Foundation
import QcowIO
import Testing
import TestSupport

/// `imgbench qcow check` counts leaks and corruptions as `qemu-img check` does, and exits as it
/// does: 0 clean, 2 corrupt, 3 leaks only.
@Suite struct CheckCommandTests {
    enum Damage: String, CaseIterable, Sendable {
        case none, leak, corruption, both
    }

    @Test(arguments: Damage.allCases)
    func checkAgreesWithQemuImg(_ damage: Damage) throws {
        let dir = try TempDir("check")
        let img = dir.file("img.qcow2")
        try Qemu.imgOK("create", "-f", "qcow2", "-o", "cluster_size=4096", img, "8M")
        try Qemu.io(img, ["write -P 0x41 0 100k", "write -P 0x42 3M 4k", "write -c -P 0x43 5M 4k", "write -z 4k 4k"])
        let q0 = try QcowImage(path: img)
        let data = try q0.l2Entry(forGuest: 3 << 20).clusterOffset / 4096
        try q0.close()
        switch damage {
        case .none: break
        case .leak: try setRefcount16(img, cluster: 0, to: 2)
        case .corruption: try setRefcount16(img, cluster: data, to: 0)
        case .both:
            try setRefcount16(img, cluster: 0, to: 2)
            try setRefcount16(img, cluster: data, to: 0)
        }
        let qemu = try Qemu.check(img)
        let json = try imgbench("qcow", "check", "--format", "json", img)
        let mine = try decodeJSON(CheckResult.self, json.stdout)
        #expect(mine.leaks == qemu.leaks, "imgbench: \(json.output); qemu-img: \(qemu)")
        #expect(mine.corruptions == qemu.corruptions, "imgbench: \(json.output); qemu-img: \(qemu)")
        #expect(json.status == qemu.status, "imgbench exit \(json.status); qemu-img: \(qemu)")
        let expectedStatus: Int32 = switch damage { case .none: 0; case .leak: 3; case .corruption, .both: 2 }
        #expect(qemu.status == expectedStatus)
        // The table form exits alike and says what it found.
        let table = try imgbench("qcow", "check", img)
        #expect(table.status == json.status)
        switch damage {
        case .none: #expect(table.stdout.contains("No errors were found on the image."))
        case .leak: #expect(table.stdout.contains("1 leaked clusters were found on the image."))
        case .corruption, .both: #expect(table.stdout.contains("errors were found on the image."))
        }
    }
}
