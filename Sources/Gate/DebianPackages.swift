import Foundation

/// Debian's package database (`/var/lib/dpkg/status`) as `imgbench diff` reads it: the installed
/// packages and their versions, and versions compared as dpkg compares them.
public enum DebianPackages {
    public static let statusPath = "var/lib/dpkg/status"

    /// Installed packages (Status `... installed`) by name, with their versions.
    public static func installed(_ status: String) -> [String: String] {
        var out: [String: String] = [:]
        for paragraph in status.components(separatedBy: "\n\n") {
            var fields: [String: String] = [:]
            for line in paragraph.split(separator: "\n") where !line.hasPrefix(" ") {
                let kv = line.split(separator: ":", maxSplits: 1)
                if kv.count == 2 { fields[String(kv[0])] = kv[1].trimmingCharacters(in: .whitespaces) }
            }
            if let name = fields["Package"], let version = fields["Version"], fields["Status"]?.hasSuffix(" installed") == true {
                out[name] = version
            }
        }
        return out
    }

    /// dpkg's order of versions (`[epoch:]upstream[-revision]`): negative when `a` is older.
    public static func compare(_ a: String, _ b: String) -> Int {
        func split(_ v: String) -> (Int, String, String) {
            var rest = Substring(v)
            var epoch = 0
            if let colon = rest.firstIndex(of: ":"), let e = Int(rest[..<colon]) { epoch = e; rest = rest[rest.index(after: colon)...] }
            if let dash = rest.lastIndex(of: "-") { return (epoch, String(rest[..<dash]), String(rest[rest.index(after: dash)...])) }
            return (epoch, String(rest), "")
        }
        let (ea, ua, ra) = split(a), (eb, ub, rb) = split(b)
        if ea != eb { return ea < eb ? -1 : 1 }
        let u = part(ua, ub)
        return u != 0 ? u : part(ra, rb)
    }

    /// One part, as dpkg's verrevcmp: runs of non-digits by the order below, runs of digits as numbers.
    static func part(_ a: String, _ b: String) -> Int {
        var x = Array(a.unicodeScalars), y = Array(b.unicodeScalars)
        func order(_ c: Unicode.Scalar?) -> Int {
            guard let c else { return 0 }
            if c == "~" { return -1 }
            if CharacterSet.letters.contains(c) { return Int(c.value) }
            return Int(c.value) + 256
        }
        func isDigit(_ c: Unicode.Scalar) -> Bool { ("0"..."9").contains(c) }
        while !x.isEmpty || !y.isEmpty {
            while (x.first.map { !isDigit($0) } ?? false) || (y.first.map { !isDigit($0) } ?? false) {
                let ox = x.first.map { isDigit($0) ? 0 : order($0) } ?? 0, oy = y.first.map { isDigit($0) ? 0 : order($0) } ?? 0
                if ox != oy { return ox < oy ? -1 : 1 }
                if let f = x.first, !isDigit(f) { x.removeFirst() }
                if let f = y.first, !isDigit(f) { y.removeFirst() }
            }
            let nx = x.prefix(while: isDigit), ny = y.prefix(while: isDigit)
            x.removeFirst(nx.count)
            y.removeFirst(ny.count)
            let dx = String(String.UnicodeScalarView(nx)).drop { $0 == "0" }, dy = String(String.UnicodeScalarView(ny)).drop { $0 == "0" }
            if dx.count != dy.count { return dx.count < dy.count ? -1 : 1 }
            if dx != dy { return dx < dy ? -1 : 1 }
        }
        return 0
    }
}
