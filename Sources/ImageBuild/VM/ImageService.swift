import Foundation
import OCI

/// The image's command as a systemd service of the VM (`vm-boot=firmware`), so that the VM runs
/// what the container runs, as d2vm does: ENTRYPOINT + CMD as `ExecStart=`, ENV as
/// `Environment=`, WORKDIR as `WorkingDirectory=`, USER as `User=`/`Group=`.
public enum ImageService {
    public static let name = "imgbench-image.service"

    /// The unit file, or nil when the image has no command. `resolve` finds a bare program name
    /// on the image's PATH (systemd wants an absolute path) and gives nil when it is not there.
    public static func unit(config: ContainerConfig, resolve: (_ program: String, _ path: String) -> String?) throws -> String? {
        let argv = (config.entrypoint ?? []) + (config.cmd ?? [])
        guard var program = argv.first else { return nil }
        let env = config.env ?? []
        if !program.hasPrefix("/") {
            let path = env.first { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) }
                ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            guard let found = resolve(program, path) else {
                throw BuildError.invalid("vm-boot=firmware: the image's command '\(program)' is not on its PATH (\(path)); the VM's service needs an absolute path")
            }
            program = found
        }
        var lines = ["# Written by imgbench: the image's ENTRYPOINT/CMD, ENV, WORKDIR and USER, as the container runs them.",
                     "[Unit]", "Description=The image's command (ENTRYPOINT and CMD)",
                     "Wants=network-online.target", "After=network-online.target", "",
                     "[Service]", "Type=exec"]
        if let user = config.user, !user.isEmpty {
            let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
            lines.append("User=\(parts[0])")
            if parts.count > 1 { lines.append("Group=\(parts[1])") }
        }
        lines.append("WorkingDirectory=\(escapeSpecifiers(config.workingDir.flatMap { $0.isEmpty ? nil : $0 } ?? "/"))")
        for e in env { lines.append("Environment=\(quote(e))") }
        lines.append("ExecStart=" + ([program] + argv.dropFirst()).map(quote).joined(separator: " "))
        lines += ["Restart=on-failure", "StandardOutput=journal+console", "StandardError=journal+console", "",
                  "[Install]", "WantedBy=multi-user.target", ""]
        return lines.joined(separator: "\n")
    }

    /// One argument, double-quoted for systemd: `\` and `"` escaped, `$` and `%` doubled (no
    /// variable or specifier expansion: the container's exec form expands nothing either).
    static func quote(_ s: String) -> String {
        var out = "\""
        for c in s {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "$": out += "$$"
            case "%": out += "%%"
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out + "\""
    }

    static func escapeSpecifiers(_ s: String) -> String { s.replacingOccurrences(of: "%", with: "%%") }
}
