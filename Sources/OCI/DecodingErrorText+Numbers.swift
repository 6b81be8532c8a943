import Foundation

// Foundation's JSONDecoder (swift-corelibs, Linux) reports a number that does not fit the field
// it is decoded into (negative for an unsigned count, fractional for an integer, past 2^64) as
// "the given data was not valid JSON", with no path. Where the data is JSON after all, the number
// is found by setting the suspects to 0 and decoding again, halving the suspects each time.
extension DecodingErrorText {
    /// The place (a JSON path) and the problem of `e`, also for a number that does not fit.
    public static func describe<T: Decodable>(_ e: DecodingError, decoding type: T.Type, from data: Data) -> (place: String, problem: String) {
        if isPlaceless(e), let misfit = misfitNumber(in: data, stillFails: { placelessFailure(T.self, $0) }) { return misfit }
        return (place(of: e), problem(of: e))
    }

    static func isPlaceless(_ e: DecodingError) -> Bool {
        if case let .dataCorrupted(c) = e { return c.codingPath.isEmpty }
        return false
    }

    static func placelessFailure<T: Decodable>(_ type: T.Type, _ data: Data) -> Bool {
        do {
            _ = try JSONDecoder().decode(type, from: data)
            return false
        } catch let e as DecodingError {
            return isPlaceless(e)
        } catch {
            return false
        }
    }

    /// A number of the document that, once set to 0, lets the decoding get past where it failed
    /// without a place; nil when there is none (the data is not JSON, or something else is wrong).
    static func misfitNumber(in data: Data, stillFails: (Data) -> Bool) -> (place: String, problem: String)? {
        guard let tree = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else { return nil }
        var suspects: [(path: [CodingKey], value: Double)] = []
        collectSuspects(tree, path: [], into: &suspects)
        func failsWithFirst(_ k: Int) -> Bool {
            let zeroed = Set(suspects.prefix(k).map { jsonPath($0.path) })
            guard let d = try? JSONSerialization.data(withJSONObject: zeroing(tree, path: [], zeroed), options: [.fragmentsAllowed]) else { return true }
            return stillFails(d)
        }
        guard !suspects.isEmpty, !failsWithFirst(suspects.count) else { return nil }
        var lo = 1, hi = suspects.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if failsWithFirst(mid) { lo = mid + 1 } else { hi = mid }
        }
        let s = suspects[lo - 1]
        return (jsonPath(s.path), misfitProblem(s.value))
    }

    static func misfitProblem(_ v: Double) -> String {
        let text = v == v.rounded() && abs(v) < 1e18 ? String(Int64(v)) : "\(v)"
        if v != v.rounded() { return "\(text) is not a whole number" }
        if v < 0 { return "\(text) is negative; expected a number of 0 or more" }
        return "\(text) is too large (past 2^64)"
    }

    /// Numbers that an integer field of some width cannot hold: negative, fractional, past 2^63.
    static func collectSuspects(_ value: Any, path: [CodingKey], into out: inout [(path: [CodingKey], value: Double)]) {
        if let d = value as? [String: Any] {
            for k in d.keys.sorted() { collectSuspects(d[k]!, path: path + [JSONKey(k)], into: &out) }
        } else if let a = value as? [Any] {
            for (i, v) in a.enumerated() { collectSuspects(v, path: path + [JSONKey(i)], into: &out) }
        } else if let n = value as? NSNumber {
            let v = n.doubleValue
            if v < 0 || v != v.rounded() || v >= 0x1p63 { out.append((path, v)) }
        }
    }

    static func zeroing(_ value: Any, path: [CodingKey], _ zeroed: Set<String>) -> Any {
        if let d = value as? [String: Any] {
            return Dictionary(uniqueKeysWithValues: d.map { k, v in (k, zeroing(v, path: path + [JSONKey(k)], zeroed)) })
        } else if let a = value as? [Any] {
            return a.enumerated().map { i, v in zeroing(v, path: path + [JSONKey(i)], zeroed) }
        } else if value is NSNumber, zeroed.contains(jsonPath(path)) {
            return 0
        }
        return value
    }
}

/// A key of a JSON path: an object's member or an array's index.
struct JSONKey: CodingKey {
    var stringValue: String
    var intValue: Int?

    init(_ string: String) { stringValue = string }
    init(_ int: Int) { stringValue = "\(int)"; intValue = int }
    init?(stringValue: String) { self.init(stringValue) }
    init?(intValue: Int) { self.init(intValue) }
}
