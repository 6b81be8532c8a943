import ArgumentParser
import Host
import QcowIO

/// `imgbench qcow write-random`: a stress tool for the crash-ordering of QcowIO's writes.
///
/// It writes many pseudo-random clusters (partial, cross-cluster, whole, zeroed) into an existing
/// qcow2 image, one write at a time, without ever syncing. The tests kill it with SIGKILL at
/// random points and check that `qemu-img check` finds leaks at most, never corruption.
struct QcowStress: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write-random",
        abstract: "Stress tool: write pseudo-random data into an existing qcow2 image (for crash-consistency tests).",
        discussion: """
            Writes COUNT operations chosen by SEED: random bytes at random offsets and lengths (partial \
            clusters, runs across clusters, whole clusters) and, now and then, whole clusters marked as \
            zeros. Prints "done N" after every PROGRESS operations so that a caller can tell how far it \
            got. Meant to be killed part-way; the image must then hold leaked clusters at most.
            """)

    @Argument(help: "An existing qcow2 image (version 3), opened for writing.", transform: absolutePath) var image: String
    @Option(help: "Seed of the pseudo-random sequence.") var seed: UInt64 = 1
    @Option(help: "Number of write operations.") var count: Int = 1000
    @Option(help: "Print a progress line after this many operations (0: never).") var progress: Int = 0

    func validate() throws {
        if count < 0 { throw ValidationError("--count must not be negative") }
        if progress < 0 { throw ValidationError("--progress must not be negative") }
    }

    func run() throws {
        try reportingErrors {
            let img = try QcowImage(path: image, writable: true)
            var rng = SeededRandom(seed: seed)
            let size = img.virtualSize
            let cs = UInt64(img.clusterSize)
            guard size > 0 else { return }
            for i in 0..<count {
                let kind = rng.next() % 8
                if kind == 0 && size >= cs {
                    // Whole clusters marked as zeros.
                    let clusters = size / cs
                    let first = rng.next() % clusters
                    let n = min(1 + rng.next() % 4, clusters - first)
                    try img.writeZeroes(at: first * cs, length: n * cs)
                } else {
                    let maxLength = min(size, 3 * cs)
                    let length = 1 + rng.next() % maxLength
                    let offset = kind == 1 ? (rng.next() % (size / cs + 1)) * cs % size : rng.next() % (size - length + 1)
                    let n = Int(min(length, size - offset))
                    var bytes = [UInt8](repeating: 0, count: n)
                    var k = 0
                    while k < n {
                        var v = rng.next()
                        for _ in 0..<8 where k < n {
                            bytes[k] = UInt8(truncatingIfNeeded: v)
                            v >>= 8
                            k += 1
                        }
                    }
                    try img.write(bytes, at: offset)
                }
                if progress > 0, (i + 1) % progress == 0 { printOut("done \(i + 1)") }
            }
            try img.close()
        }
    }
}
