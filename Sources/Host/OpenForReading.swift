import CLinux
import Foundation

// Apart from FileSystem.swift: importing CLinux there would make its `stat` extension one of
// CLinux's view of the type, not the one its callers see.
extension FileSystem {
    /// open(2) of a file for reading, never through a symbolic link. With `noAtime` the read does
    /// not move the file's atime (O_NOATIME, which only its owner or CAP_FOWNER may ask for; else
    /// it opens as usual). The descriptor, or -1 with errno set.
    public static func openForReading(_ path: String, noAtime: Bool = false) -> Int32 {
        let flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW
        if noAtime {
            let fd = open(path, flags | imgbench_o_noatime())
            if fd >= 0 || errno != EPERM { return fd }
        }
        return open(path, flags)
    }
}
