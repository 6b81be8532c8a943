/// Figures of repeated samples.
public enum Statistics {
    /// The middle value (the mean of the two middle ones for an even count); nil for no values.
    public static func median(_ values: [Double]) -> Double? {
        let v = values.sorted()
        guard !v.isEmpty else { return nil }
        return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
    }
}
