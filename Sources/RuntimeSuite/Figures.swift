import Foundation

/// Parsers of the benchmark tools' output, each reading the figure the way the tool prints it.
/// Carriage returns (a serial console's line ends, redis-benchmark's progress) are ignored.
public enum Figures {
    /// sysbench cpu: `events per second:  1033.55`.
    public static func sysbenchCPU(_ out: String) throws -> Double {
        try number(after: "events per second:", in: out, tool: "sysbench cpu")
    }

    /// sysbench memory: `2022.14 MiB transferred (1989.85 MiB/sec)`.
    public static func sysbenchMemory(_ out: String) throws -> Double {
        for line in lines(out) where line.contains("MiB transferred (") {
            let inner = line.split(separator: "(").last?.split(separator: " ").first
            if let v = inner.flatMap({ Double($0) }) { return v }
        }
        throw FigureError(tool: "sysbench memory", message: "no 'MiB transferred (N MiB/sec)' line")
    }

    /// sysbench oltp: `transactions:  1234  (123.40 per sec.)` and `queries:  ...  (... per sec.)`.
    public static func sysbenchOLTP(_ out: String) throws -> (transactions: Double, queries: Double) {
        func perSecond(_ label: String) throws -> Double {
            for line in lines(out) where line.trimmingCharacters(in: .whitespaces).hasPrefix(label) {
                if let open = line.firstIndex(of: "("),
                   let v = Double(line[line.index(after: open)...].split(separator: " ").first ?? "") { return v }
            }
            throw FigureError(tool: "sysbench oltp", message: "no '\(label) N (X per sec.)' line")
        }
        return (try perSecond("transactions:"), try perSecond("queries:"))
    }

    /// fio `--output-format=json`: the first job's read and write IOPS (with --group_reporting, the
    /// sum over the jobs). Text before the JSON (warnings) is skipped.
    public static func fio(_ out: String) throws -> (readIOPS: Double, writeIOPS: Double) {
        let json = try jsonObject(out, tool: "fio")
        guard let jobs = json["jobs"] as? [[String: Any]], let job = jobs.first,
              let read = (job["read"] as? [String: Any])?["iops"] as? Double,
              let write = (job["write"] as? [String: Any])?["iops"] as? Double else {
            throw FigureError(tool: "fio", message: "no jobs[0].read.iops and jobs[0].write.iops in its JSON")
        }
        return (read, write)
    }

    /// iperf3 `-J`: bits per second the receiver counted (`end.sum_received.bits_per_second`).
    public static func iperf3(_ out: String) throws -> Double {
        let json = try jsonObject(out, tool: "iperf3")
        if let e = json["error"] as? String { throw FigureError(tool: "iperf3", message: e) }
        guard let v = ((json["end"] as? [String: Any])?["sum_received"] as? [String: Any])?["bits_per_second"] as? Double else {
            throw FigureError(tool: "iperf3", message: "no end.sum_received.bits_per_second in its JSON")
        }
        return v
    }

    /// nuttcp `-fparse`: the rate in Mbit/s (`rate_Mbps=15539.3976` on its one line).
    public static func nuttcp(_ out: String) throws -> Double {
        for line in lines(out) where line.contains("rate_Mbps=") {
            for field in line.split(separator: " ") where field.hasPrefix("rate_Mbps=") {
                if let v = Double(field.dropFirst("rate_Mbps=".count)) { return v }
            }
        }
        let error = lines(out).first { $0.hasPrefix("nuttcp-") || $0.lowercased().contains("error") }
        throw FigureError(tool: "nuttcp", message: error.map { "no rate_Mbps: \($0)" } ?? "no rate_Mbps= in its output")
    }

    /// qperf: each test's `latency = 12.5 us` (ns, us, ms or sec), in seconds, by test name.
    public static func qperf(_ out: String) throws -> [String: Double] {
        var test: String?
        var found: [String: Double] = [:]
        let scale = ["ns": 1e-9, "us": 1e-6, "ms": 1e-3, "sec": 1.0]
        for line in lines(out) {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasSuffix(":"), !t.contains(" ") { test = String(t.dropLast()); continue }
            let parts = t.split(separator: " ").filter { $0 != "=" }
            guard let test, parts.count >= 3, parts[0] == "latency" else { continue }
            guard let v = Double(parts[1].replacingOccurrences(of: ",", with: "")), let s = scale[String(parts[2])] else {
                throw FigureError(tool: "qperf", message: "\(test): a latency it does not read: \(t)")
            }
            found[test] = v * s
        }
        guard !found.isEmpty else { throw FigureError(tool: "qperf", message: "no latency in its output") }
        return found
    }

    /// redis-benchmark `--csv`: requests per second by test name (`"SET","30211.48",...`).
    public static func redisBenchmark(_ out: String) throws -> [String: Double] {
        var rows: [String: Double] = [:]
        for line in lines(out) {
            let cells = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\" ")) }
            guard cells.count >= 2, cells[0] != "test", let rps = Double(cells[1]) else { continue }
            rows[cells[0]] = rps
        }
        guard !rows.isEmpty else { throw FigureError(tool: "redis-benchmark", message: "no CSV rows of requests per second") }
        return rows
    }

    /// hpcc's summary section (`KEY=VALUE` lines of hpccoutf.txt): STREAM Triad of one process
    /// (GB/s), RandomAccess of one process (GUP/s) and HPL (Tflop/s, returned in GFLOP/s).
    public static func hpcc(_ out: String) throws -> (streamTriadGBs: Double, randomAccessGUPs: Double, hplGFLOPs: Double) {
        var values: [String: Double] = [:]
        for line in lines(out) {
            let kv = line.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2, let v = Double(kv[1]) { values[String(kv[0])] = v }
        }
        func value(_ key: String) throws -> Double {
            guard let v = values[key] else { throw FigureError(tool: "hpcc", message: "no \(key)= in the summary section") }
            return v
        }
        return (try value("SingleSTREAM_Triad"), try value("SingleRandomAccess_GUPs"), try value("HPL_Tflops") * 1000)
    }

    // MARK: - Helpers

    static func lines(_ out: String) -> [Substring] {
        out.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
    }

    static func number(after label: String, in out: String, tool: String) throws -> Double {
        for line in lines(out) {
            guard let r = line.range(of: label) else { continue }
            if let v = Double(line[r.upperBound...].trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") { return v }
        }
        throw FigureError(tool: tool, message: "no '\(label) N' line")
    }

    /// The JSON object from the first `{` at the start of a line to the last `}`.
    static func jsonObject(_ out: String, tool: String) throws -> [String: Any] {
        let text = out.replacingOccurrences(of: "\r", with: "")
        guard let start = text.range(of: "\n{")?.lowerBound ?? (text.hasPrefix("{") ? text.startIndex : nil),
              let end = text.range(of: "}", options: .backwards)?.upperBound, start < end,
              let obj = try? JSONSerialization.jsonObject(with: Data(text[start..<end].utf8)) as? [String: Any] else {
            throw FigureError(tool: tool, message: "no JSON object")
        }
        return obj
    }
}
