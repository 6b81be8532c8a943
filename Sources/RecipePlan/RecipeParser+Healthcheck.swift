import Foundation

// HEALTHCHECK and ONBUILD: image-config instructions, read as BuildKit reads them.
extension RecipeParser {
    /// HEALTHCHECK's duration flags.
    static let healthDurations = ["interval", "timeout", "start-period", "start-interval"]

    /// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D]
    /// [--retries=N] CMD command` (shell or exec form), or `HEALTHCHECK NONE`.
    func parseHealthcheck(_ a: Arguments) throws -> Step.Instruction {
        let body = a.body.trimmingCharacters(in: .whitespaces)
        let kind = String(body.prefix { !$0.isWhitespace })
        let rest = body.dropFirst(kind.count).trimmingCharacters(in: .whitespaces)
        switch kind.uppercased() {
        case "NONE":
            guard rest.isEmpty else { throw RecipeError(a.location, "HEALTHCHECK NONE takes no arguments") }
            return .healthcheck(HealthCheck(test: ["NONE"]))
        case "CMD":
            guard !rest.isEmpty else { throw RecipeError(a.location, "HEALTHCHECK CMD needs a command") }
            var check = HealthCheck(test: jsonArray(rest).map { ["CMD"] + $0 } ?? ["CMD-SHELL", rest])
            try healthFlags(a, into: &check)
            return .healthcheck(check)
        default:
            throw RecipeError(location(a.line, a.offset), "unknown HEALTHCHECK type '\(kind)' (CMD or NONE)")
        }
    }

    /// The durations (at least 1ms, or 0 for the default) and retries (not negative).
    func healthFlags(_ a: Arguments, into check: inout HealthCheck) throws {
        var ns: [String: Int64] = [:]
        for name in RecipeParser.healthDurations {
            guard let text = a.flags[name] else { continue }
            guard let d = RecipeParser.duration(text), d == 0 || d >= 1_000_000 else {
                throw RecipeError(a.location, "HEALTHCHECK --\(name)=\(text) is not a duration of at least 1ms (e.g. 30s, 1m30s, 500ms)")
            }
            ns[name] = d
        }
        (check.interval, check.timeout) = (ns["interval"] ?? 0, ns["timeout"] ?? 0)
        (check.startPeriod, check.startInterval) = (ns["start-period"] ?? 0, ns["start-interval"] ?? 0)
        if let text = a.flags["retries"] {
            guard let n = Int(text), n >= 0 else { throw RecipeError(a.location, "HEALTHCHECK --retries=\(text) is not a count of 0 or more") }
            check.retries = n
        }
    }

    /// A Go duration (`300ms`, `1.5h`, `1m30s`, `0`) in nanoseconds; nil when it is not one or
    /// is negative.
    static func duration(_ text: String) -> Int64? {
        if text == "0" { return 0 }
        // Two-letter units first: `ms` is not `m` then `s`.
        let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 6e10), ("h", 3.6e12)]
        var rest = Substring(text), total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            rest = rest.dropFirst(number.count)
            guard let value = Double(number), let unit = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.0.count)
            total += value * unit.1
        }
        return total < 9.2e18 ? Int64(total.rounded()) : nil
    }

    /// ONBUILD: a trigger recorded into the image config as written; not ONBUILD, FROM or
    /// MAINTAINER, and an instruction that exists.
    func parseOnBuild(_ a: Arguments) throws -> Step.Instruction {
        let trigger = a.body.trimmingCharacters(in: .whitespaces)
        let keyword = trigger.prefix { !$0.isWhitespace }.uppercased()
        let at = location(a.line, a.offset)
        if ["ONBUILD", "FROM", "MAINTAINER"].contains(keyword) {
            throw RecipeError(at, "\(keyword) is not allowed as an ONBUILD trigger")
        }
        guard RecipeParser.instructionNames.contains(keyword) else { throw RecipeError(at, "unknown instruction '\(keyword)' after ONBUILD") }
        return .onBuild(trigger)
    }

    static let instructionNames: Set<String> = [
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    ]
}
