import Foundation

/// What `imgbench check` cannot work with: a report or budget that cannot be read or does not
/// mean anything. Each names the file and the place in it.
public enum GateError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(path: String, message: String)
    /// `place` is `file:line:column` or `file: at json.path`.
    case invalid(place: String, message: String)

    public var description: String {
        switch self {
        case let .unreadable(path, message): return "\(path): \(message)"
        case let .invalid(place, message): return "\(place): \(message)"
        }
    }
}

extension BuildReport {
    /// Reads a `report.json`; errors name the file and the JSON path of what is wrong.
    public static func load(_ path: String) throws -> BuildReport {
        guard let data = FileManager.default.contents(atPath: path) else {
            let why = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file"
            throw GateError.unreadable(path: path, message: "\(why) (a report.json written by imgbench build)")
        }
        let report: BuildReport
        do {
            report = try JSONDecoder().decode(BuildReport.self, from: data)
        } catch let e as DecodingError {
            throw GateError.invalid(place: "\(path): at \(Self.place(of: e))", message: Self.problem(of: e))
        } catch {
            throw GateError.invalid(place: path, message: "not a build report: \(error)")
        }
        guard report.schemaVersion <= currentSchemaVersion else {
            throw GateError.invalid(place: "\(path): at schemaVersion",
                                    message: "schema version \(report.schemaVersion) is newer than this imgbench reads (\(currentSchemaVersion))")
        }
        return report
    }

    static func jsonPath(_ keys: [CodingKey]) -> String {
        let p = keys.map { k in k.intValue.map { "[\($0)]" } ?? ".\(k.stringValue)" }.joined()
        return p.isEmpty ? "the top" : String(p.drop { $0 == "." })
    }

    static func place(of e: DecodingError) -> String {
        switch e {
        case let .keyNotFound(key, c): return jsonPath(c.codingPath + [key])
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c): return jsonPath(c.codingPath)
        @unknown default: return "the top"
        }
    }

    static func problem(of e: DecodingError) -> String {
        switch e {
        case .keyNotFound: return "missing (required by the report schema)"
        case let .typeMismatch(t, _): return "expected \(t == String.self ? "a string" : t == Bool.self ? "a boolean" : "a \(t)")"
        case let .valueNotFound(t, _): return "expected a \(t), found null"
        case let .dataCorrupted(c):
            return c.codingPath.isEmpty ? "not JSON (\(c.underlyingError.map { ($0 as NSError).localizedDescription } ?? c.debugDescription))" : c.debugDescription
        @unknown default: return "\(e)"
        }
    }
}
