import CDeflate
import Dispatch
import Foundation
import Host

/// gzip members of files, compressed before the capture that needs them.
///
/// A gzip layer's stream is cut so that a large file's content (`ParallelGzip.ownMembersFrom`
/// bytes or more) starts a member of its own and is cut every `ParallelGzip.blockSize` bytes
/// from its start, whatever comes before it in the tar. Each of its members is then a function
/// of the file's content alone, and can be compressed while the step that writes the file still
/// runs (`EarlyCompression`). The capture takes a member from here only when the block it cut
/// has the member's length and CRC-32, read from the file at capture time; any other block is
/// compressed then. Both ways give the same bytes, so the layer's digest does not depend on
/// what was compressed early.
///
/// The members wait in memory, at most `limit` bytes of them (a file past it is left to the
/// capture): a spool file would add its dirty pages to every fsync the step makes.
public final class PrecompressedFiles: @unchecked Sendable {
    /// One member: `raw` bytes of a file from a block boundary, with CRC-32 `crc`, compressed.
    struct Member: Sendable, Equatable {
        var data: Data
        var raw: Int
        var crc: UInt32
    }

    /// A file by its inode: a rename (dpkg's `.dpkg-new` to its name) keeps it.
    struct Key: Hashable {
        var dev: UInt64
        var ino: UInt64
        init(_ st: stat) { (dev, ino) = (UInt64(st.st_dev), UInt64(st.st_ino)) }
    }

    /// The members of a file as it was when they were compressed: a file written again since
    /// has another size or mtime (and, were both set back, another CRC-32 in some block).
    struct Entry {
        var size: Int64
        var mtime: timespec
        var members: [Member]

        func matches(_ st: stat) -> Bool {
            size == Int64(st.st_size) && sameTime(mtime, st.st_mtim)
        }

        var bytes: Int { members.reduce(0) { $0 + $1.data.count } }
    }

    /// The gzip level of the members: a capture at another level compresses everything itself.
    public let level: Int
    /// The most compressed bytes kept.
    public let limit: Int
    private let lock = NSLock()
    private var entries: [Key: Entry] = [:]
    private var held = 0
    private var taken = 0
    private var takenBytes: Int64 = 0

    public init(level: Int, limit: Int = 1 << 30) {
        self.level = level
        self.limit = limit
    }

    /// Files with members, and the raw bytes they hold.
    public var stored: (files: Int, bytes: Int64) {
        lock.withLock { (entries.count, entries.values.reduce(0) { $0 + $1.size }) }
    }

    /// Members a capture took instead of compressing, and their raw bytes.
    public var membersTaken: Int { lock.withLock { taken } }
    public var bytesTaken: Int64 { lock.withLock { takenBytes } }

    /// Whether the members of the file `st` describes are here.
    func has(_ st: stat) -> Bool { lock.withLock { entries[Key(st)]?.matches(st) == true } }

    /// Whether there is room for more.
    var full: Bool { lock.withLock { held >= limit } }

    /// The members of the file `st` (an fstat of the open file) describes, if it is unchanged.
    func members(for st: stat) -> [Member]? {
        lock.withLock {
            guard let e = entries[Key(st)] else {
                lookups.absent += 1
                return nil
            }
            guard e.matches(st) else {
                lookups.changed += 1
                return nil
            }
            lookups.found += 1
            return e.members
        }
    }

    /// What the capture's lookups found: members, a file changed since, nothing.
    public struct Lookups: Sendable {
        public var found = 0, changed = 0, absent = 0, crcMismatches = 0
    }
    public var lookupCounts: Lookups { lock.withLock { lookups } }
    private var lookups = Lookups()

    /// Counts a block whose CRC-32 was not its member's.
    func mismatched() { lock.withLock { lookups.crcMismatches += 1 } }

    /// Keeps the members of a file compressed from its state `st`, in the order of its blocks
    /// (unless that would pass the limit).
    func add(_ st: stat, members: [(data: Data, raw: Int)]) {
        let kept = members.map { m in
            // The CRC-32 of the raw block is in the member's trailer (RFC 1952: CRC32, ISIZE).
            let crc = m.data.withUnsafeBytes { b in UInt32(littleEndian: b.loadUnaligned(fromByteOffset: b.count - 8, as: UInt32.self)) }
            return Member(data: m.data, raw: m.raw, crc: crc)
        }
        let entry = Entry(size: Int64(st.st_size), mtime: st.st_mtim, members: kept)
        lock.withLock {
            let replaced = entries[Key(st)]?.bytes ?? 0
            guard held - replaced + entry.bytes <= limit else { return }
            held += entry.bytes - replaced
            entries[Key(st)] = entry
        }
    }

    /// Counts a member the capture took.
    func took(_ m: Member) {
        lock.withLock {
            taken += 1
            takenBytes += Int64(m.raw)
        }
    }
}

/// Compresses, while a step runs, the large files it writes into its layer's upper directory, so
/// that its capture finds most of its gzip members done (`PrecompressedFiles`).
///
/// A thread walks the directory every `interval`; a regular file of at least
/// `ParallelGzip.ownMembersFrom` bytes whose members are not kept yet, and whose ctime is at
/// least `settle` old (so a file being written is left until it is done), is compressed block by
/// block on threads of their own, as background work at `nice` (`Processors.inBackground`: the
/// step keeps the CPU it uses), and kept if its
/// size, mtime and ctime are the same after the read as before it. Everything is best effort: a
/// file that vanishes or changes is simply left to the capture. `stop()` ends the walk and waits
/// for the files being compressed, each of which stops at its next block; it must be called (the
/// walking thread holds the instance until then).
///
/// The walk itself runs at the caller's priority, not as background work: a readdir holds its
/// directory's lock, and a thread of the idle cgroup preempted inside one makes the step's next
/// create or rename in that directory wait until the idle thread runs again (measured: dpkg's
/// phase of an apt step 1.3-1.7 s longer with the whole walk idle). It stays on the directory's
/// own file system (mmdebstrap mounts /proc, /sys and /dev inside the root it makes), and leaves
/// out the folders `skipping` names (relative paths), whose files the work deletes before it ends.
public final class EarlyCompression: @unchecked Sendable {
    public let files: PrecompressedFiles
    let directory: String
    let interval: Double
    let settle: Double
    let skipping: Set<String>
    private let workers: LoweredWorkers
    private let group = DispatchGroup()
    private let wake = DispatchSemaphore(value: 0)
    private let walked = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var stopping = false
    private var inFlight = Set<PrecompressedFiles.Key>()
    private var stopped = false
    private var counts = Counts()

    /// What the walk did: walks, folders read, files compressed (kept or not) and their bytes.
    public struct Counts: Sendable {
        public var walks = 0
        /// Folders read (readdir), and names looked at (lstat): in a folder whose mtime did not
        /// change, only its new names and the files it watches.
        public var reads = 0
        public var looks = 0
        public var files = 0
        public var bytes: Int64 = 0
        public var kept = 0
    }

    public var done: Counts { lock.withLock { counts } }

    public init(watching directory: String, into files: PrecompressedFiles, threads: Int = Processors.count,
                nice: Int32 = 10, interval: Double = 0.2, settle: Double = 0.3, skipping: Set<String> = []) {
        self.files = files
        self.directory = directory
        self.interval = interval
        self.settle = settle
        self.skipping = skipping
        workers = LoweredWorkers(count: max(1, threads), nice: nice)
        let t = Thread { [self] in
            while !isStopping {
                if let top = try? FileSystem.lstat(directory), top.isDirectory { walk("", device: top.st_dev) }
                lock.withLock { counts.walks += 1 }
                _ = wake.wait(timeout: .now() + interval)
            }
            walked.signal()
        }
        t.name = "imgbench early compression walk"
        t.start()
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    /// Ends the walk and waits for the files being compressed; idempotent.
    public func stop() {
        let first = lock.withLock { () -> Bool in
            defer { stopping = true; stopped = true }
            return !stopped
        }
        guard first else { return }
        wake.signal()
        walked.wait()
        group.wait()
        workers.close()
    }

    /// A folder as the last walk read it: its mtime then (a create, rename or removal in it
    /// changes it), the names in it, its subfolders, and its files that may still change in
    /// place (written within the settle time, or large and not yet taken).
    private struct Folder {
        var mtime: timespec
        var names: Set<String> = []
        var folders: [String] = []
        var watched: [String] = []
    }

    /// What the walks found, by path relative to `directory`. Each walk reads every folder, but
    /// looks (lstat) only at the names new in it, and at the files it watches; all of them only
    /// where its mtime changed. The mtime alone does not tell of every new name: overlayfs sets
    /// a folder's mtime back after copying a child up into it, so a folder or file copied up
    /// into the upper directory leaves its parent's mtime as it was.
    private var folders: [String: Folder] = [:]

    private func walk(_ rel: String, device: dev_t) {
        let dir = rel.isEmpty ? directory : directory + "/" + rel
        guard let here = try? FileSystem.lstat(dir), here.isDirectory, here.st_dev == device,
              let all = try? FileSystem.children(dir) else {
            folders[rel] = nil
            return
        }
        let names = Set(all)
        var folder = Folder(mtime: here.st_mtim, names: names)
        let look: [String]
        // An mtime within the settle time may not be the folder's last: timestamps are coarse,
        // and a create in the same tick as the last read leaves it as it was.
        if let known = folders[rel], sameTime(known.mtime, here.st_mtim), age(here.st_mtim) >= max(settle, interval) {
            folder.folders = known.folders.filter(names.contains)
            look = all.filter { !known.names.contains($0) } + known.watched.filter(names.contains)
        } else {
            look = all
        }
        lock.withLock {
            counts.reads += 1
            counts.looks += look.count
        }
        for name in look {
            if isStopping { return }
            guard let st = try? FileSystem.lstat(dir + "/" + name), st.st_dev == device else { continue }
            if st.isDirectory {
                let sub = rel.isEmpty ? name : rel + "/" + name
                // (a name looked at is not among the known folders: it is new, or a watched file)
                if !skipping.contains(sub) { folder.folders.append(name) }
            } else if st.isRegular && self.look(at: dir + "/" + name, st) {
                folder.watched.append(name)
            }
        }
        folders[rel] = folder
        for name in folder.folders {
            if isStopping { return }
            walk(rel.isEmpty ? name : rel + "/" + name, device: device)
        }
    }

    /// Compresses the regular file `st` describes when it is large, settled and not kept yet;
    /// whether to look at it again next walk (it may still change, or was not taken yet).
    private func look(at path: String, _ st: stat) -> Bool {
        let recent = age(st.st_ctim) < settle
        guard Int(st.st_size) >= ParallelGzip.ownMembersFrom, !recent else { return recent }
        if files.has(st) { return false }
        if files.full { return false }
        let key = PrecompressedFiles.Key(st)
        guard lock.withLock({ inFlight.insert(key).inserted }) else { return true }
        group.enter()
        workers.submit { [self] in
            compress(path, st)
            lock.withLock { _ = inFlight.remove(key) }
            group.leave()
        }
        return true
    }

    /// Seconds since `t`.
    private func age(_ t: timespec) -> Double {
        Date().timeIntervalSince1970 - (Double(t.tv_sec) + Double(t.tv_nsec) / 1e9)
    }

    /// Compresses one file into members, kept only if the file did not change meanwhile.
    private func compress(_ path: String, _ listed: stat) {
        if isStopping { return }
        let fd = FileSystem.openForReading(path, noAtime: true)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var before = stat()
        guard fstat(fd, &before) == 0, same(before, listed) else { return }
        let level = Int32(files.level)
        var members: [(data: Data, raw: Int)] = []
        var block = Data(count: ParallelGzip.blockSize)
        var remaining = Int(before.st_size)
        while remaining > 0 {
            if isStopping { return }
            let want = min(remaining, ParallelGzip.blockSize)
            let got = block.withUnsafeMutableBytes { b -> Int in
                var done = 0
                while done < want {
                    let n = read(fd, b.baseAddress! + done, want - done)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return done }
                    done += n
                }
                return done
            }
            guard got == want else { return }
            guard case let .success(m) = ParallelGzip.member(block.prefix(want), level: level, path: path) else { return }
            members.append((m, want))
            remaining -= want
        }
        var after = stat()
        let unchanged = fstat(fd, &after) == 0 && same(after, before) && sameTime(after.st_ctim, before.st_ctim)
        lock.withLock {
            counts.files += 1
            counts.bytes += Int64(before.st_size)
            if unchanged { counts.kept += 1 }
        }
        if unchanged { files.add(before, members: members) }
    }

    private func same(_ a: stat, _ b: stat) -> Bool {
        a.st_dev == b.st_dev && a.st_ino == b.st_ino && a.st_size == b.st_size
            && sameTime(a.st_mtim, b.st_mtim)
    }
}

/// Whether two timestamps are the same, to the nanosecond.
private func sameTime(_ a: timespec, _ b: timespec) -> Bool { a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec }
