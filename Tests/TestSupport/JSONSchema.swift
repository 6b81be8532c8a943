import Foundation

// The subset of JSON Schema that the project's documented schemas (docs/*.json) use: type,
// required, properties, items, $ref, const, enum, additionalProperties, with every key written
// required to be documented.

/// A schema of the project's `docs/` folder, by file name.
public func documentedSchema(_ name: String) throws -> [String: Any] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/\(name)")
    guard let s = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
        throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: url.path])
    }
    return s
}

/// What in `value` the schema does not allow, each with its JSON path.
public func schemaProblems(_ value: Any, _ s: [String: Any], root: [String: Any], at path: String = "$") -> [String] {
    if let ref = s["$ref"] as? String {
        let name = String(ref.dropFirst("#/$defs/".count))
        guard let def = (root["$defs"] as? [String: Any])?[name] as? [String: Any] else { return ["\(path): no $defs/\(name)"] }
        return schemaProblems(value, def, root: root, at: path)
    }
    var out: [String] = []
    if let c = s["const"] {
        if "\(c)" != "\(value)" { out.append("\(path): \(value) is not the constant \(c)") }
    }
    if let e = s["enum"] as? [Any], !e.contains(where: { "\($0)" == "\(value)" }) { out.append("\(path): \(value) is not one of \(e)") }
    switch s["type"] as? String {
    case "object"?:
        guard let o = value as? [String: Any] else { return out + ["\(path): not an object"] }
        for k in s["required"] as? [String] ?? [] where o[k] == nil { out.append("\(path): lacks required \(k)") }
        let props = s["properties"] as? [String: Any]
        for (k, v) in o {
            if let p = props?[k] as? [String: Any] {
                out += schemaProblems(v, p, root: root, at: "\(path).\(k)")
            } else if let extra = s["additionalProperties"] as? [String: Any] {
                out += schemaProblems(v, extra, root: root, at: "\(path).\(k)")
            } else {
                out.append("\(path): \(k) is not documented")
            }
        }
    case "array"?:
        guard let a = value as? [Any] else { return out + ["\(path): not an array"] }
        if let items = s["items"] as? [String: Any] {
            for (i, v) in a.enumerated() { out += schemaProblems(v, items, root: root, at: "\(path)[\(i)]") }
        }
    case "string"?: if !(value is String) { out.append("\(path): not a string") }
    case "integer"?: if (value as? NSNumber).map({ $0.doubleValue != $0.doubleValue.rounded() }) ?? true { out.append("\(path): not an integer") }
    case "number"?: if !(value is NSNumber) { out.append("\(path): not a number") }
    case "boolean"?: if !isBoolean(value) { out.append("\(path): not a boolean") }
    default: break
    }
    return out
}

/// JSONSerialization gives booleans as Bool or as an NSNumber of 0 or 1, depending on the platform.
private func isBoolean(_ v: Any) -> Bool {
    if v is Bool { return true }
    return (v as? NSNumber).map { $0.doubleValue == 0 || $0.doubleValue == 1 } ?? false
}

