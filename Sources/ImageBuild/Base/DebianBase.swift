import Crypto
import Foundation
import Host
import OCI
import QcowIO

/// A Debian root made with mmdebstrap from the host's configured apt sources, the suites renamed
/// to the one the recipe asks for (`bookworm` → `bullseye`, `bookworm-updates` →
/// `bullseye-updates`, `bookworm-security` → `bullseye-security`). Cached by suite, variant and
/// sources: the same base is made once.
///
/// `slim` (`debian:SUITE-slim`) leaves out what Debian's slim images leave out (debuerreotype's
/// slimify): documentation but each package's copyright file, man and info pages, groff's
/// files, lintian overrides and locales but `locale.alias`, as dpkg `path-exclude` options
/// (`mmdebstrap --dpkgopt`), which stay in the root's `/etc/dpkg/dpkg.cfg.d/` so that the
/// packages a step installs later leave them out too.
public struct DebianBase: Sendable {
    public var suite: String
    public var variant: String
    public var slim: Bool
    /// The deb822 sources the root is made from.
    public var sources: String

    public init(suite: String, variant: String, slim: Bool = false, hostSources: String? = nil) throws {
        self.suite = suite
        self.variant = variant
        self.slim = slim
        sources = DebianBase.sources(forSuite: suite, host: try hostSources ?? DebianBase.readHostSources())
    }

    /// The suite as FROM names it (`bookworm`, `bookworm-slim`).
    public var name: String { slim ? "\(suite)-slim" : suite }

    /// The cache key: what the root depends on (a slim root is its own base).
    public var key: String {
        let text = "debian\n\(suite)\n\(variant)\n\(sources)" + (slim ? "\nslim\n" + DebianBase.slimOptions.joined(separator: "\n") : "")
        return Digest.of(Data(text.utf8)).hex
    }

    /// The dpkg options of a slim root, in order (a later path-include wins over an earlier exclude).
    public static let slimOptions = [
        "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/groff/*", "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/lintian/*", "path-exclude=/usr/share/linda/*",
        "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias",
    ]

    /// The host's apt sources in deb822 form (`.sources` files; one-line `.list` entries converted).
    public static func readHostSources(etc: String = "/etc/apt") throws -> String {
        var stanzas: [String] = []
        let fm = FileManager.default
        var files: [String] = []
        if fm.fileExists(atPath: "\(etc)/sources.list") { files.append("\(etc)/sources.list") }
        let dir = "\(etc)/sources.list.d"
        for f in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted() where f.hasSuffix(".list") || f.hasSuffix(".sources") {
            files.append("\(dir)/\(f)")
        }
        for f in files {
            guard let text = try? String(contentsOfFile: f, encoding: .utf8) else { continue }
            if f.hasSuffix(".sources") {
                stanzas += text.components(separatedBy: "\n\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            } else {
                for line in text.split(separator: "\n") {
                    let words = line.split(separator: " ").map(String.init)
                    guard words.count >= 4, words[0] == "deb" else { continue }
                    let signed = words.first { $0.hasPrefix("[signed-by=") }.map { "\nSigned-By: " + $0.dropFirst(11).dropLast() } ?? ""
                    let rest = words.drop { $0 != words[0] }.dropFirst().filter { !$0.hasPrefix("[") }
                    guard rest.count >= 3 else { continue }
                    stanzas.append("Types: deb\nURIs: \(rest[0])\nSuites: \(rest[1])\nComponents: \(rest.dropFirst(2).joined(separator: " "))" + signed)
                }
            }
        }
        let debian = stanzas.filter { $0.contains("Types: deb") && !$0.contains("deb-src") }
        guard !debian.isEmpty else { throw BuildError.invalid("no Debian apt sources configured in \(etc)/sources.list or \(dir)") }
        return debian.joined(separator: "\n\n")
    }

    /// Renames the suites of the host's sources to `suite` and its -updates and -security pockets;
    /// drops comment lines and stanzas of other distributions.
    public static func sources(forSuite suite: String, host: String) -> String {
        var out: [String] = []
        for stanza in host.components(separatedBy: "\n\n") {
            var lines: [String] = []
            var keep = false
            for line in stanza.split(separator: "\n").map(String.init) where !line.hasPrefix("#") {
                if line.hasPrefix("Suites:") {
                    let suites = line.dropFirst(7).split(separator: " ").map { s -> String in
                        let str = String(s)
                        if let dash = str.firstIndex(of: "-") { return suite + str[dash...] }
                        return suite
                    }
                    keep = true
                    var seen = Set<String>()
                    lines.append("Suites: " + suites.filter { seen.insert($0).inserted }.joined(separator: " "))
                } else {
                    lines.append(line)
                }
            }
            if keep { out.append(lines.joined(separator: "\n")) }
        }
        return out.joined(separator: "\n\n") + "\n"
    }

    /// Where mmdebstrap writes the root `make` makes at `path`.
    public static func partial(_ path: String) -> String { path + ".partial" }

    /// Makes the root at `path` (which must not exist) as `path.partial`, renamed when complete;
    /// a failure or an interruption leaves nothing, and a dead maker's leftover is removed first.
    /// `environment` is added to mmdebstrap's (the package cache's `http_proxy`, which apt reads).
    public func make(at path: String, environment: [String: String] = [:], onOutput: (@Sendable (String) -> Void)? = nil) throws {
        let tmp = Self.partial(path)
        let sourcesFile = tmp + ".sources"
        try BuildCache.makingPartial(sourcesFile) {
            try Data(sources.utf8).write(to: URL(fileURLWithPath: sourcesFile))
            defer { unlink(sourcesFile) }
            try BuildCache.makingPartial(tmp) {
                let slimming = slim ? DebianBase.slimOptions.map { "--dpkgopt=\($0)" } : []
                let r = try Command.run(["mmdebstrap", "--mode=root", "--variant=\(variant)", "--format=directory",
                                         "--skip=output/dev"] + slimming + [suite, tmp, sourcesFile],
                                        environment: environment.merging(["PATH": Sandbox.defaultPath, "LC_ALL": "C.UTF-8"]) { $1 }, onOutput: onOutput)
                guard r.status == 0 else {
                    throw HostError.commandFailed(what: "making the debian:\(name) base with mmdebstrap",
                                                   argv: ["mmdebstrap", "--variant=\(variant)", suite], status: r.status,
                                                   outputTail: Command.tail(r.output, lines: 20))
                }
                try FileSystem.rename(tmp, to: path)
            }
        }
    }
}
