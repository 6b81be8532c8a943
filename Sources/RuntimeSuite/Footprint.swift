import Foundation

/// The memory a running instance costs the host, read from /proc: the proportional set size
/// (PSS: each page shared by n processes counts 1/n) and the resident set size of a process and
/// its descendants, as Sharma et al. (Middleware 2016) compare an idle container's processes with
/// an idle VM's hypervisor process.
public enum Footprint {
    public struct Memory: Equatable, Sendable {
        public var rssBytes: UInt64
        public var pssBytes: UInt64

        public init(rssBytes: UInt64, pssBytes: UInt64) {
            self.rssBytes = rssBytes
            self.pssBytes = pssBytes
        }

        static func + (a: Memory, b: Memory) -> Memory {
            Memory(rssBytes: a.rssBytes + b.rssBytes, pssBytes: a.pssBytes + b.pssBytes)
        }
    }

    /// `/proc/PID/smaps_rollup`: its `Rss:` and `Pss:` lines (`Pss:   522 kB`), in bytes.
    public static func smapsRollup(_ text: String) throws -> Memory {
        var kib: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 3, parts[2] == "kB", let v = UInt64(parts[1]) else { continue }
            kib[String(parts[0])] = v
        }
        guard let rss = kib["Rss:"], let pss = kib["Pss:"] else {
            throw FigureError(tool: "smaps_rollup", message: "no 'Rss: N kB' and 'Pss: N kB' lines")
        }
        return Memory(rssBytes: rss * 1024, pssBytes: pss * 1024)
    }

    /// `/proc/PID/stat`: the parent's PID, the field after the state, which follows the command
    /// name in parentheses (a name may itself hold spaces and parentheses: the last `)` ends it).
    public static func parentPID(stat: String) throws -> Int32 {
        guard let close = stat.lastIndex(of: ")") else { throw FigureError(tool: "/proc/PID/stat", message: "no command name in parentheses") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count >= 2, let ppid = Int32(fields[1]) else { throw FigureError(tool: "/proc/PID/stat", message: "no parent PID after the state") }
        return ppid
    }

    /// `pid` and every process below it, read from /proc (processes that end meanwhile are
    /// skipped).
    public static func processTree(_ pid: Int32) -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let p = Int32(name), let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                  let parent = try? parentPID(stat: stat) else { continue }
            children[parent, default: []].append(p)
        }
        var tree: [Int32] = []
        var queue = [pid]
        while let p = queue.popLast() {
            tree.append(p)
            queue += children[p] ?? []
        }
        return tree
    }

    /// The sum over `pid`'s process tree; nil when `pid` has ended.
    public static func ofTree(_ pid: Int32) -> Memory? {
        var total: Memory?
        for p in processTree(pid) {
            guard let text = try? String(contentsOfFile: "/proc/\(p)/smaps_rollup", encoding: .utf8),
                  let m = try? smapsRollup(text) else { continue }
            total = (total ?? Memory(rssBytes: 0, pssBytes: 0)) + m
        }
        return total
    }
}
