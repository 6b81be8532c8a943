import Foundation
import Host

/// What the parser directives at the top of a recipe set.
struct Directives {
    var vm = VMSettings()
    var variant = "minbase"
    var escape: Character = "\\"
    var workloads: [WorkloadName] = []
}

extension RecipeParser {
    /// One `# key=value` line at the top of the recipe.
    struct Directive {
        var key: String
        var value: String
        /// The physical line, for the places of the workload names.
        var line: Substring
        var location: SourceLocation
    }

    /// The keys read as parser directives: BuildKit's and imgbench's (an unknown `vm-` or `base-`
    /// key is one, refused by `apply`).
    static func isDirective(_ key: String) -> Bool {
        ["escape", "syntax", "check", "workloads"].contains(key) || key.hasPrefix("vm-") || key.hasPrefix("base-")
    }

    /// The variants mmdebstrap makes, for `# base-variant=`.
    static let baseVariants = ["extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "debootstrap", "standard"]

    /// Reads the parser directives, the `# key=value` lines at the very top; gives what they set
    /// and the index of the first physical line after them.
    func parseDirectives(_ physical: [Substring]) throws -> (directives: Directives, next: Int) {
        var directives = Directives()
        var seen = Set<String>()
        var bootLocation: SourceLocation?
        var index = 0
        while index < physical.count, let d = directive(physical[index], number: index + 1) {
            // A directive-like comment of another tool is a comment, and ends the directives, as in BuildKit.
            guard RecipeParser.isDirective(d.key) else { break }
            if seen.contains(d.key) { throw RecipeError(d.location, "parser directive '\(d.key)' given twice") }
            seen.insert(d.key)
            try apply(d, to: &directives)
            if d.key == "vm-boot" { bootLocation = d.location }
            index += 1
        }
        if directives.vm.boot == .firmware, let loc = bootLocation {
            // The layout needs 128 MiB before the root partition (BIOS boot and ESP) and room for
            // the kernel, systemd and GRUB after it; only ext4 is populated at an offset (mkfs -d).
            guard directives.vm.size >= VMSettings.firmwareMinimumSize else {
                throw RecipeError(loc, "vm-boot=firmware needs vm-size of at least 512M (the disk holds a 128M ESP and boot partition before the root)")
            }
            guard directives.vm.filesystem == "ext4" else {
                throw RecipeError(loc, "vm-boot=firmware makes ext4 root partitions only, not vm-filesystem=\(directives.vm.filesystem)")
            }
        }
        return (directives, index)
    }

    /// The directive a physical line holds, or nil where the directives end.
    func directive(_ line: Substring, number: Int) -> Directive? {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("#") else { return nil }
        let body = trimmed.dropFirst().trimmingCharacters(in: .whitespaces)
        // `#key=value`, with blanks allowed around `=` (BuildKit's `# escape = \`).
        guard let eq = body.firstIndex(of: "=") else { return nil }
        let key = body[..<eq].lowercased().trimmingCharacters(in: .whitespaces)
        let value = body[body.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        guard key.first?.isLetter == true, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else { return nil }
        let column = (line.firstIndex(of: "#").map { line.distance(from: line.startIndex, to: $0) } ?? 0) + 1
        return Directive(key: key, value: value, line: line, location: SourceLocation(file: file, line: number, column: column))
    }

    /// Sets what one directive says; refuses a value it does not take, and an unknown `vm-` or
    /// `base-` key (other keys are comments, as Containerfile readers treat them).
    func apply(_ d: Directive, to directives: inout Directives) throws {
        let (key, value, loc) = (d.key, d.value, d.location)
        switch key {
        case "escape":
            guard value == "\\" || value == "`" else { throw RecipeError(loc, "escape must be \\ or `, not '\(value)'") }
            directives.escape = value.first!
        case "syntax", "check":
            break // BuildKit's; nothing to do here
        case "vm-size":
            guard let bytes = ByteCount.parse(value), bytes >= 64 << 20 else {
                throw RecipeError(loc, "vm-size '\(value)' is not a size of at least 64M (e.g. 4G)")
            }
            directives.vm.size = bytes
        case "vm-filesystem":
            guard ["ext4", "xfs", "btrfs"].contains(value) else { throw RecipeError(loc, "vm-filesystem '\(value)' must be ext4, xfs or btrfs") }
            directives.vm.filesystem = value
        case "vm-boot":
            guard let b = VMSettings.Boot(rawValue: value) else {
                throw RecipeError(loc, "vm-boot '\(value)' must be one of \(VMSettings.Boot.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            directives.vm.boot = b
        case "vm-kernel":
            guard let k = VMSettings.Kernel(rawValue: value) else {
                throw RecipeError(loc, "vm-kernel '\(value)' must be image or host")
            }
            directives.vm.kernel = k
        case "vm-cluster-size":
            guard let bytes = ByteCount.parse(value), bytes.nonzeroBitCount == 1, (512...(2 << 20)).contains(bytes) else {
                throw RecipeError(loc, "vm-cluster-size '\(value)' must be a power of two from 512 to 2M")
            }
            directives.vm.clusterSize = Int(bytes)
        case "base-variant":
            guard RecipeParser.baseVariants.contains(value) else {
                throw RecipeError(loc, "base-variant '\(value)' is not an mmdebstrap variant")
            }
            directives.variant = value
        case "workloads":
            for w in workloadNames(d) where !directives.workloads.contains(where: { $0.name == w.name }) {
                directives.workloads.append(w)
            }
        default:
            if key.hasPrefix("vm-") || key.hasPrefix("base-") {
                throw RecipeError(loc, "unknown parser directive '\(key)' (vm-size, vm-filesystem, vm-boot, vm-kernel, vm-cluster-size, base-variant, workloads)")
            }
            // Other directive-like comments are comments, as Containerfile readers treat them.
        }
    }

    /// The comma-separated names of `# workloads=`, each with its place: the runtime suite, which
    /// knows the workloads, checks them (`Workload.validate`), as the parser cannot see it.
    func workloadNames(_ d: Directive) -> [WorkloadName] {
        let line = d.line
        let afterEquals = line.index(after: line.firstIndex(of: "=")!)
        let valueColumn = line.distance(from: line.startIndex, to: afterEquals)
            + line[afterEquals...].prefix { $0 == " " || $0 == "\t" }.count + 1
        var names: [WorkloadName] = []
        var offset = 0
        for part in d.value.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.trimmingCharacters(in: .whitespaces)
            let at = SourceLocation(file: file, line: d.location.line, column: valueColumn + offset + part.prefix { $0 == " " }.count)
            names.append(WorkloadName(name: name, location: at))
            offset += part.count + 1
        }
        return names
    }
}
