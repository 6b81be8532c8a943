import Foundation

/// The JSON of every document written here: keys sorted, slashes unescaped, so that the same
/// content always gives the same bytes and therefore the same digest.
enum CanonicalJSON {
    static func encode<T: Encodable>(_ value: T) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(value)
    }

    static func decode<T: Decodable>(_ type: T.Type, from data: Data, path: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let e as LayersError {
            throw e
        } catch {
            throw LayersError.invalidDocument(path: path, reason: "does not decode as \(T.self): \(error)")
        }
    }
}
