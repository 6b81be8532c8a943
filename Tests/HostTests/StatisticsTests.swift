import Host
import Testing

// Medians' companions for the performance gate: the spread of rounds, and bootstrap intervals.

@Test func spreadAndBootstrapIntervalsOfRounds() throws {
    #expect(Statistics.coefficientOfVariation([10, 10, 10]) == 0)
    #expect(abs((Statistics.coefficientOfVariation([2, 4, 4, 4, 5, 5, 7, 9]) ?? 0) - 2.138 / 5) < 0.001)
    #expect(Statistics.coefficientOfVariation([]) == nil && Statistics.coefficientOfVariation([5]) == 0)
    let diff = { (a: [Double], b: [Double]) in (Statistics.median(b) ?? 0) - (Statistics.median(a) ?? 0) }
    let i = try #require(Statistics.bootstrapInterval([10, 11, 9, 10], [20, 21, 19, 20], statistic: diff))
    #expect(i.lowerBound >= 8 && i.upperBound <= 12, "\(i)")
    #expect(Statistics.bootstrapInterval([10, 11, 9, 10], [20, 21, 19, 20], statistic: diff) == i, "a fixed seed: the same interval")
    let overlapping = try #require(Statistics.bootstrapInterval([5, 15, 8, 12, 10], [7, 16, 9, 13, 11], statistic: diff))
    #expect(overlapping.contains(0), "\(overlapping)")
    // Resamples that divide by a zero median are left out rather than trapping the interval.
    let relative = { (a: [Double], b: [Double]) in ((Statistics.median(b) ?? 0) - (Statistics.median(a) ?? 0)) / (Statistics.median(a) ?? 0) }
    let z = try #require(Statistics.bootstrapInterval([0, 0, 10], [5, 5, 6], statistic: relative))
    #expect(z.lowerBound.isFinite && z.upperBound.isFinite)
    #expect(Statistics.bootstrapInterval([0], [1], statistic: relative) == nil)
}
