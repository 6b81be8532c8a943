import Foundation
import Host
import OCI

/// The VM side's entries in a registry (`RemoteCache`): a link with its record (for what it cost
/// when built), and a finalisation's boot files.
extension VMPass {
    /// The settings folder's name is part of the tag: a link is the link of a key on one disk size,
    /// filesystem, cluster size and kernel choice.
    func remoteTag(_ key: String) -> String { "vm-\((folder as NSString).lastPathComponent)-\(key)" }

    /// The link `key` (on `parent`) and its boot files from the registry, put in place and
    /// recorded as `making` does; false when the registry has none.
    func fetchLink(_ key: String, parent: String?) throws -> Bool {
        try remote?.fetch(remoteTag(key), into: "\(folder)/\(key).fetch") { dir, digests in
            let boot = "\(folder)/\(key).boot"
            let names = try FileSystem.children(dir)
            var bootDigests: [String: Digest]?
            // Boot files beside the link are the entry's, or none.
            try FileSystem.removeTree(boot)
            if names.contains(where: { $0.hasPrefix("boot-") }) {
                try FileSystem.makeDirectories(dir + "/boot")
                bootDigests = [:]
                for n in names where n.hasPrefix("boot-") {
                    try FileSystem.rename("\(dir)/\(n)", to: "\(dir)/boot/\(n.dropFirst(5))")
                    bootDigests?[String(n.dropFirst(5))] = digests[n]
                }
                try FileSystem.rename(dir + "/boot", to: boot)
            }
            // The files were checked against these digests as they came: the record needs no second
            // read. What the link cost where it was built comes with it (`record.json`).
            let maker = try? JSONDecoder().decode(LinkRecord.self, from: Data(contentsOf: URL(fileURLWithPath: "\(dir)/record.json")))
            let known = try digests["link.qcow2"].map { d in
                LinkRecord(digest: d, size: Int64(try FileSystem.lstat("\(dir)/link.qcow2").st_size), parent: parent.map { ($0 as NSString).lastPathComponent },
                           boot: bootDigests, builtSeconds: maker?.builtSeconds)
            }
            _ = try making(key, parent: parent, started: Date(), record: known) { partial in try FileSystem.rename("\(dir)/link.qcow2", to: partial) }
            events.note("cache: VM link \(key.prefix(12)) from the registry")
            return true
        } ?? false
    }

    /// Stores the link `key` and its boot files in the registry (`--cache-to`).
    func storeLink(_ key: String) throws {
        guard let remote, remote.settings.to != nil else { return }
        let boot = "\(folder)/\(key).boot"
        var files = ["link.qcow2": path(key), "record.json": recordPath(key)]
        for n in (try? FileSystem.children(boot)) ?? [] { files["boot-\(n)"] = "\(boot)/\(n)" }
        // The record's digests were checked against the files when this build used or made the link.
        var digests: [String: Digest] = [:]
        if let data = FileManager.default.contents(atPath: recordPath(key)), let record = try? JSONDecoder().decode(LinkRecord.self, from: data) {
            digests["link.qcow2"] = record.digest
            for (n, d) in record.boot ?? [:] { digests["boot-\(n)"] = d }
        }
        try remote.store(remoteTag(key), files: files, digests: digests)
    }
}
