import Foundation
import Host
import OCI

/// The flattened disk in the formats users import (`--vm-format`): converted from
/// `vm/disk.qcow2` at the end of the build with qemu-img and checked by it.
///
/// - raw: `vm/disk.raw`, sparse (Proxmox, `dd`, cloud image uploads); checked with `qemu-img info`.
/// - vmdk: `vm/disk.vmdk`, monolithicSparse (VMware; VMware ESXi may prefer streamOptimized, which
///   `qemu-img convert -o subformat=streamOptimized` makes); checked with `qemu-img check`.
/// - vhdx: `vm/disk.vhdx`, dynamic (Hyper-V); checked with `qemu-img check`.
/// - containerdisk: `vm/containerdisk/`, an OCI layout tagged with the image's name holding the
///   qcow2 as a KubeVirt containerDisk (`ContainerDisk`), at `/disk/NAME.qcow2` (the recipe's name).
public enum VMFormats {
    public enum Format: String, CaseIterable, Sendable, Codable {
        case qcow2, raw, vmdk, vhdx, containerdisk
    }

    /// `--vm-format`'s comma-separated list; qcow2 is always written, so it may be left out.
    public static func parse(_ text: String) throws -> [Format] {
        var out: [Format] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.trimmingCharacters(in: .whitespaces).lowercased()
            guard let f = Format(rawValue: name) else {
                throw BuildError.invalid("--vm-format: '\(name)' is not one of \(Format.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if !out.contains(f) { out.append(f) }
        }
        return out
    }

    /// Writes each format but qcow2 from `folder/vm/disk.qcow2`, checks it, and reports it.
    static func write(_ formats: [Format], folder: String, name: String, tag: String, events: BuildEvents) throws -> [BuildReport.VMFormatOutput] {
        let disk = "\(folder)/vm/disk.qcow2"
        var out: [BuildReport.VMFormatOutput] = []
        for f in formats where f != .qcow2 {
            let start = Date()
            let rel: String
            switch f {
            case .qcow2: continue
            case .raw, .vmdk, .vhdx:
                rel = "vm/disk.\(f.rawValue)"
                events.note("vm: converting the disk to \(f.rawValue)")
                let options = f == .vhdx ? ["-o", "subformat=dynamic"] : []
                try Command.check("converting the VM disk to \(f.rawValue)",
                                  ["qemu-img", "convert", "-f", "qcow2", "-O", f.rawValue] + options + [disk, "\(folder)/\(rel)"])
                if f == .raw {
                    try Command.check("reading the raw VM disk", ["qemu-img", "info", "-f", "raw", "\(folder)/\(rel)"])
                } else {
                    try Command.check("checking the \(f.rawValue) VM disk", ["qemu-img", "check", "-f", f.rawValue, "\(folder)/\(rel)"])
                }
            case .containerdisk:
                rel = "vm/containerdisk"
                events.note("vm: writing the disk as a KubeVirt containerDisk")
                let layout = try ImageLayout.create(at: "\(folder)/\(rel)")
                let kernel = "\(folder)/vm/boot/vmlinuz", initrd = "\(folder)/vm/boot/initrd.img"
                _ = try ContainerDisk.write(.init(disk: disk, kernel: kernel,
                                                  initrd: FileManager.default.fileExists(atPath: initrd) ? initrd : nil, name: name),
                                            into: layout, tag: tag, progress: nil)
            }
            out.append(.init(format: f.rawValue, path: rel, diskBytes: try FileSystem.allocatedBytes("\(folder)/\(rel)"),
                             seconds: Date().timeIntervalSince(start)))
        }
        return out
    }
}
