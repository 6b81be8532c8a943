import Foundation
import Host
import OCI

/// The VM side's entries in a registry (`RemoteCache`): a link, and a finalisation's boot files.
extension VMPass {
    /// The settings folder's name is part of the tag: a link is the link of a key on one disk size,
    /// filesystem, cluster size and kernel choice.
    func remoteTag(_ key: String) -> String { "vm-\((folder as NSString).lastPathComponent)-\(key)" }

    /// The link `key` (on `parent`) and its boot files from the registry, put in place and
    /// recorded as `making` does; false when the registry has none.
    func fetchLink(_ key: String, parent: String?) throws -> Bool {
        try remote?.fetch(remoteTag(key), into: "\(folder)/\(key).fetch") { dir in
            let boot = "\(folder)/\(key).boot"
            let names = try FileSystem.children(dir)
            if names.contains(where: { $0.hasPrefix("boot-") }) {
                try FileSystem.removeTree(boot)
                try FileSystem.makeDirectories(dir + "/boot")
                for n in names where n.hasPrefix("boot-") { try FileSystem.rename("\(dir)/\(n)", to: "\(dir)/boot/\(n.dropFirst(5))") }
                try FileSystem.rename(dir + "/boot", to: boot)
            }
            try making(key, parent: parent) { partial in try FileSystem.rename("\(dir)/link.qcow2", to: partial) }
            events.note("cache: VM link \(key.prefix(12)) from the registry")
            return true
        } ?? false
    }

    /// Stores the link `key` and its boot files in the registry (`--cache-to`).
    func storeLink(_ key: String) throws {
        guard let remote, remote.settings.to != nil else { return }
        let boot = "\(folder)/\(key).boot"
        var files = ["link.qcow2": path(key)]
        for n in (try? FileSystem.children(boot)) ?? [] { files["boot-\(n)"] = "\(boot)/\(n)" }
        try remote.store(remoteTag(key), files: files)
    }
}
