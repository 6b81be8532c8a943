import Foundation

/// The JSON of every document written here: keys sorted, slashes unescaped, so that the same
/// content always gives the same bytes and therefore the same digest.
public enum CanonicalJSON {
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(value)
    }

    /// The same, pretty-printed, for files people read (reports, manifests, results).
    public static func pretty<T: Encodable>(_ value: T) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try e.encode(value)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, path: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let e as OCIError {
            throw e
        } catch let e as DecodingError {
            let (place, problem) = DecodingErrorText.describe(e, decoding: T.self, from: data)
            throw OCIError.invalidDocument(path: path, reason: "does not decode as \(T.self): at \(place): \(problem)")
        } catch {
            throw OCIError.invalidDocument(path: path, reason: "does not decode as \(T.self): \(error)")
        }
    }
}

/// A JSON decoding error as people read it: where (a JSON path such as `steps[2].container.size`)
/// and what is wrong there.
public enum DecodingErrorText {
    public static func jsonPath(_ keys: [CodingKey]) -> String {
        let p = keys.map { k in k.intValue.map { "[\($0)]" } ?? ".\(k.stringValue)" }.joined()
        return p.isEmpty ? "the top" : String(p.drop { $0 == "." })
    }

    public static func place(of e: DecodingError) -> String {
        switch e {
        case let .keyNotFound(key, c): return jsonPath(c.codingPath + [key])
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c): return jsonPath(c.codingPath)
        @unknown default: return "the top"
        }
    }

    public static func problem(of e: DecodingError) -> String {
        switch e {
        case .keyNotFound: return "missing (required by its schema)"
        case let .typeMismatch(t, _): return "expected \(t == String.self ? "a string" : t == Bool.self ? "a boolean" : "a \(t)")"
        case let .valueNotFound(t, _): return "expected a \(t), found null"
        case let .dataCorrupted(c):
            return c.codingPath.isEmpty ? "not JSON (\(c.underlyingError.map { ($0 as NSError).localizedDescription } ?? c.debugDescription))" : c.debugDescription
        @unknown default: return "\(e)"
        }
    }
}
