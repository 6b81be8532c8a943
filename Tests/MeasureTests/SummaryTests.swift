import Foundation
import Testing
@testable import Measure

// Repeated samples become minimum, median and maximum; the result files say their kind.

@Test func summariesOfOddAndEvenCountsAndNone() throws {
    let odd = try #require(Summary([3, 1, 2]))
    #expect(odd.min == 1 && odd.median == 2 && odd.max == 3 && odd.samples == 3)
    let even = try #require(Summary([4, 1, 3, 2]))
    #expect(even.median == 2.5 && even.samples == 4)
    #expect(Summary([]) == nil)
}

@Test func resultFilesNameTheirKind() throws {
    let result = WastedMeasurement.Result(recipe: "t", image: "out/t")
    let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(result)) as? [String: Any])
    #expect(json["kind"] as? String == "wasted")
}
