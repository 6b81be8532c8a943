@_exported import struct Host.SeededRandom

// What the tests add to Host's seeded generator (SplitMix64, the sequence `imgbench qcow stress`
// uses, so a seed names the same data in the tool and in the tests).

extension SeededRandom {
    /// `n` random bytes.
    public mutating func bytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var v = next()
            for _ in 0..<8 where i < n { out[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
        }
        return out
    }

    /// A number in 0..<n (0 when n is 0).
    public mutating func below(_ n: UInt64) -> UInt64 { n == 0 ? 0 : next() % n }
}

extension SeededRandom {
    /// The contents of a disk of `size` bytes, the same for the same arguments: runs of
    /// `shortestRun` to `shortestRun + runSpread - 1` bytes, each zeros, incompressible random
    /// bytes, a repeated text line (`line` of a number below `lineNumbers`), or, with
    /// `singleBytes`, one non-zero byte in an otherwise empty stretch.
    public static func diskContents(size: Int, seed: UInt64, shortestRun: Int, runSpread: UInt64,
                                    lineNumbers: UInt64, line: (UInt64) -> String, singleBytes: Bool) -> [UInt8] {
        var rng = SeededRandom(seed: seed)
        var b = [UInt8](repeating: 0, count: size)
        var at = 0
        while at < size {
            let run = min(size - at, shortestRun + Int(rng.below(runSpread)))
            switch rng.below(singleBytes ? 4 : 3) {
            case 0: break // zeros
            case 1: b.replaceSubrange(at..<(at + run), with: rng.bytes(run))
            case 2:
                let word = Array(line(rng.below(lineNumbers)).utf8)
                for i in 0..<run { b[at + i] = word[i % word.count] }
            default:
                b[at + Int(rng.below(UInt64(run)))] = UInt8(1 + rng.below(255))
            }
            at += run
        }
        return b
    }
}
