/// Figures of repeated samples.
public enum Statistics {
    /// The middle value (the mean of the two middle ones for an even count); nil for no values.
    public static func median(_ values: [Double]) -> Double? {
        let v = values.sorted()
        guard !v.isEmpty else { return nil }
        return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
    }
}

extension Statistics {
    public static func mean(_ values: [Double]) -> Double? {
        values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
    }

    /// The sample standard deviation over the mean (0 for one value; nil for none or a zero mean).
    public static func coefficientOfVariation(_ values: [Double]) -> Double? {
        guard let m = mean(values), m != 0 else { return nil }
        guard values.count > 1 else { return 0 }
        let variance = values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count - 1)
        return variance.squareRoot() / abs(m)
    }

    /// A percentile bootstrap confidence interval of `statistic(b, a)` (for example the
    /// relative difference of the medians of `b` and `a`): both samples resampled with
    /// replacement `resamples` times from a fixed seed, so the same data give the same interval.
    public static func bootstrapInterval(_ a: [Double], _ b: [Double], confidence: Double = 0.95, resamples: Int = 2000,
                                         seed: UInt64 = 0x1D_B0A7, statistic: ([Double], [Double]) -> Double) -> ClosedRange<Double>? {
        guard !a.isEmpty, !b.isEmpty, resamples > 0 else { return nil }
        var random = SeededRandom(seed: seed)
        func resample(_ v: [Double]) -> [Double] { v.indices.map { _ in v[Int(random.next() % UInt64(v.count))] } }
        var values: [Double] = []
        values.reserveCapacity(resamples)
        for _ in 0..<resamples {
            let v = statistic(resample(a), resample(b))
            if v.isFinite { values.append(v) }
        }
        // A resample whose statistic is not a number (a zero median to divide by) says nothing.
        guard !values.isEmpty else { return nil }
        values.sort()
        let tail = (1 - confidence) / 2, last = Double(values.count - 1)
        return values[Int((tail * last).rounded(.down))]...values[Int(((1 - tail) * last).rounded(.up))]
    }
}
