import Foundation
import Host
import OCI
import QcowIO

/// The VM side's cache entries: a link is made under its lock as `KEY.qcow2.partial`, renamed,
/// then recorded (`KEY.json`: the digests of the link and of its boot files, and what making it
/// cost); it is used only while it matches its record and is newer than its parent.
extension VMPass {
    /// What `KEY.json` holds.
    struct LinkRecord: Codable, Equatable {
        var digest: Digest
        var size: Int64
        /// The parent link's file name (nil for the base disk).
        var parent: String?
        /// The boot files of a finalised link, by name.
        var boot: [String: Digest]?
        /// Seconds from the start of the phase or step that made the link until it was recorded
        /// (the report's `builtSeconds`); nil in records written before it was kept.
        var builtSeconds: Double? = nil
        /// The finalisation of a `vm-boot=firmware` disk: what each of its parts added.
        var finalisation: BuildReport.Finalisation? = nil
    }

    func lockPath(_ key: String) -> String { "\(folder)/\(key).lock" }
    func recordPath(_ key: String) -> String { "\(folder)/\(key).json" }

    /// What making the link `key` cost, as its record keeps it (nil when it does not).
    func builtSeconds(_ key: String) -> Double? {
        FileManager.default.contents(atPath: recordPath(key)).flatMap { try? JSONDecoder().decode(LinkRecord.self, from: $0) }?.builtSeconds
    }

    /// The finalisation measures the record of the link `key` keeps.
    func finalisation(_ key: String) -> BuildReport.Finalisation? {
        FileManager.default.contents(atPath: recordPath(key)).flatMap { try? JSONDecoder().decode(LinkRecord.self, from: $0) }?.finalisation
    }

    /// Whether the link `key` may be used (`VMPass.checkLink(in:key:parent:)`).
    func checkLink(_ key: String, parent: String?) -> BuildCache.Check {
        VMPass.checkLink(in: folder, key: key, parent: parent.map { ($0 as NSString).lastPathComponent })
    }

    /// Whether the link `key` in `folder` may be used: present, recorded, its bytes and boot files
    /// those of its record, on the parent its record names (`parent`, when given, must be that
    /// one), and made after that parent (a link made on an older copy of its parent would read
    /// the new parent's blocks as its backing).
    static func checkLink(in folder: String, key: String, parent: String?) -> BuildCache.Check {
        let p = "\(folder)/\(key).qcow2"
        let fm = FileManager.default
        guard let data = fm.contents(atPath: "\(folder)/\(key).json") else {
            return fm.fileExists(atPath: p) ? .bad("a link without its record, left by a build that did not finish") : .missing
        }
        guard let record = try? JSONDecoder().decode(LinkRecord.self, from: data) else { return .bad("its record does not decode") }
        guard fm.fileExists(atPath: p) else { return .missing }
        if let parent, record.parent != parent { return .bad("its record names another parent") }
        if let parent = record.parent {
            guard fm.fileExists(atPath: "\(folder)/\(parent)") else { return .bad("its parent \(parent) is missing") }
            if modified("\(folder)/\(parent)") > modified(p) { return .bad("it was made on an older copy of its parent") }
        }
        guard let found = try? VMPass.record(of: p, parent: record.parent) else { return .bad("it cannot be read") }
        guard found.digest == record.digest && found.size == record.size else {
            return .bad("\((p as NSString).lastPathComponent) is \(found.size) bytes of \(found.digest), its record says \(record.size) bytes of \(record.digest)")
        }
        guard found.boot == record.boot else { return .bad("its boot files are not those of its record") }
        return .valid
    }

    /// Makes the link `key` (its old copy and record removed first): `body` writes the overlay
    /// given to it, which is renamed into place and recorded when `body` succeeds, with the
    /// seconds since `started` (plus `before`) it took, which are returned; a failure or an
    /// interruption leaves no `.partial`. `record`: the link's record when its digests are known
    /// already (a link fetched from a registry, recorded with the cost its maker kept), else
    /// read from the link made.
    func making(_ key: String, parent: String?, started: Date, before: Double = 0, record known: LinkRecord? = nil,
                _ body: (_ partial: String) throws -> Void) throws -> Double {
        let p = path(key)
        unlink(recordPath(key))
        unlink(p)
        try BuildCache.makingPartial(p + ".partial") {
            try body(p + ".partial")
            try FileSystem.rename(p + ".partial", to: p)
        }
        let tmp = recordPath(key) + ".partial"
        var record = try known ?? VMPass.record(of: p, parent: parent.map { ($0 as NSString).lastPathComponent })
        let seconds = known?.builtSeconds ?? before + Date().timeIntervalSince(started)
        record.builtSeconds = seconds
        if known == nil, let f = finalisationRecord { record.finalisation = f }
        try JSONEncoder().encode(record).write(to: URL(fileURLWithPath: tmp))
        try FileSystem.rename(tmp, to: recordPath(key))
        return seconds
    }

    /// Runs `body`, which writes `partial` back; a failure when the filesystem holding it is full
    /// (qemu-storage-daemon's write failed, and the disk's filesystem saw an I/O error) says so.
    func written(_ partial: String, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch {
            guard let free = try? Mounts.freeBytes(folder), free < UInt64(settings.clusterSize) * 16 else { throw error }
            throw HostError.io(path: partial, message: "no space left on the filesystem holding it (\(free) bytes free): \(error)")
        }
    }

    /// An overlay just written must be sound before it is renamed into place: the daemon that
    /// wrote it may have failed (a full disk) after the step's last write was accepted.
    static func checkWritten(_ partial: String) throws {
        let img = try QcowImage(path: partial)
        defer { try? img.close() }
        let r = try img.check()
        guard r.corruptions == 0 && r.checkErrors == 0 else {
            throw BuildError.invalid("\(partial): the overlay the step wrote is not sound (\(r.corruptions) corruptions, \(r.checkErrors) check errors): \(r.messages.prefix(3).joined(separator: "; "))")
        }
    }

    /// The digests of a link and of the boot files beside it.
    static func record(of link: String, parent: String?) throws -> LinkRecord {
        let (digest, size) = try Digest.ofFile(link)
        let boot = (link as NSString).deletingPathExtension + ".boot"
        var files: [String: Digest]?
        if let names = try? FileSystem.children(boot) {
            files = try Dictionary(uniqueKeysWithValues: names.map { ($0, try Digest.ofFile("\(boot)/\($0)").digest) })
        }
        return LinkRecord(digest: digest, size: size, parent: parent, boot: files)
    }
}
