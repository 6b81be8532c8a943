import Foundation
import Host

/// Whether files and folder trees are as they were when stamped, told without reading them.
///
/// Every change to an entry (its data, owner, mode, xattrs, a link to it) and every change to a
/// folder's list (an entry made, removed or renamed in it) sets the changed inode's ctime to the
/// kernel's current time, which no program can set back. A stamp records how many entries the
/// trees hold and a time `before` that every entry's ctime was earlier than; the trees are
/// unchanged while that still holds. The kernel stamps inodes from its coarse clock, so `before`
/// is taken from that clock, after the walk, once it has moved past the newest ctime seen.
///
/// Not covered: a change of the system clock to an earlier time between stamp and check.
public struct TreeStamp: Codable, Sendable, Equatable {
    public var entries: Int
    /// Nanoseconds since the epoch (CLOCK_REALTIME_COARSE).
    public var before: Int64

    /// Stamps the given files or trees; the paths themselves are counted with what they hold.
    public static func take(_ paths: [String]) throws -> TreeStamp {
        var count = 0
        var newest: Int64 = 0
        for p in paths { try walk(p) { _, ctime in count += 1; newest = max(newest, ctime) } }
        var now = coarseNow()
        while now <= newest {
            usleep(2_000)
            now = coarseNow()
        }
        return TreeStamp(entries: count, before: now)
    }

    /// Whether the paths still hold exactly what they held when stamped.
    public func holds(for paths: [String]) -> Bool {
        var count = 0
        var changed = false
        do {
            for p in paths {
                try Self.walk(p) { _, ctime in
                    count += 1
                    if ctime >= before { changed = true }
                }
            }
        } catch {
            return false
        }
        return !changed && count == entries
    }

    static func coarseNow() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Every entry under `path` (and `path` itself), without following symlinks.
    static func walk(_ path: String, _ visit: (String, Int64) -> Void) throws {
        let st = try FileSystem.lstat(path)
        visit(path, Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec))
        guard st.st_mode & S_IFMT == S_IFDIR else { return }
        for name in try FileSystem.children(path) { try walk(path + "/" + name, visit) }
    }
}
