import Foundation
@testable import Layers
import Host
import OCI

/// A fresh directory under the system's temporary directory, removed by `cleanup()`.
struct TempDir {
    let path: String

    init(_ label: String = "layers") throws {
        var t = Array((tmpBase + "/imgbench-\(label)-XXXXXX").utf8CString)
        guard t.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw LayersError.io(path: "mkdtemp", operation: "mkdtemp", errno: errno)
        }
        path = stringFromCArray(t)
    }

    /// A directory whose path is all lowercase (image references made from it must be).
    init(lowercase label: String) throws {
        path = tmpBase + "/imgbench-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(path)
    }

    func sub(_ name: String) throws -> String {
        let p = path + "/" + name
        try FileSystem.makeDirectories(p)
        return p
    }

    func cleanup() { try? FileSystem.removeTree(path) }
}

let isRoot = getuid() == 0
let tmpBase = NSTemporaryDirectory().hasSuffix("/") ? String(NSTemporaryDirectory().dropLast()) : NSTemporaryDirectory()

/// Runs a program, returning its exit status and what it printed on stdout and stderr together.
@discardableResult
func run(_ args: [String], cwd: String? = nil, environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, n in n } }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

func sh(_ script: String, cwd: String? = nil) throws -> (status: Int32, output: String) {
    try run(["sh", "-ec", script], cwd: cwd)
}

func haveTool(_ name: String) -> Bool {
    (try? run(["sh", "-c", "command -v \(name)"]).status) == 0
}

func write(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

/// Everything about a tree that a layer must reproduce, one line per entry, for comparing
/// trees exactly: type, mode, owner, size, mtime (seconds), content digest, link target, xattrs,
/// and which paths share an inode.
func describeTree(_ root: String, includeDirectoryTimes: Bool = true) throws -> [String] {
    var lines: [String] = []
    var inodes: [UInt64: String] = [:]
    func walk(_ rel: String) throws {
        let abs = rel.isEmpty ? root : root + "/" + rel
        for name in try FileSystem.children(abs) {
            let r = LayerEntry.join(rel, name)
            let p = abs + "/" + name
            let st = try FileSystem.lstat(p)
            var line = "\(r) type=\(String(st.fileType, radix: 8)) mode=\(String(st.st_mode & 0o7777, radix: 8)) owner=\(st.st_uid):\(st.st_gid)"
            if !st.isDirectory || includeDirectoryTimes { line += " mtime=\(st.st_mtim.tv_sec)" }
            if st.isRegular {
                if st.st_nlink > 1, let first = inodes[UInt64(st.st_ino)] {
                    line += " link=\(first)"
                } else {
                    if st.st_nlink > 1 { inodes[UInt64(st.st_ino)] = r }
                    let data = FileManager.default.contents(atPath: p) ?? Data()
                    line += " size=\(st.st_size) sha=\(Digest.of(data).hex.prefix(12))"
                }
            }
            if st.isSymlink { line += " target=\(try FileSystem.readlink(p))" }
            if st.fileType == S_IFCHR || st.fileType == S_IFBLK { line += " dev=\(st.deviceMajor),\(st.deviceMinor)" }
            for (k, v) in try FileSystem.xattrs(p).sorted(by: { $0.key < $1.key }) where LayerCapture.keepXattr(k) {
                line += " xattr:\(k)=\(v.map { String(format: "%02x", $0) }.joined())"
            }
            lines.append(line)
            if st.isDirectory { try walk(r) }
        }
    }
    try walk("")
    return lines
}

/// A tree with one of every kind of entry a layer carries.
func makeRichTree(_ root: String) throws {
    let script = """
    mkdir -p etc/app usr/bin var/empty 'dir with space'
    printf 'hello\\n' > etc/app/config
    head -c 3000000 /dev/urandom > usr/bin/big
    printf 'x' > 'dir with space/ünïcode-名前'
    ln -s ../etc/app/config usr/bin/cfg-link
    ln -s /etc/app/config usr/bin/abs-link
    printf 'shared\\n' > usr/bin/tool
    ln usr/bin/tool usr/bin/tool-again
    mkfifo var/pipe
    chmod 4755 usr/bin/tool
    chmod 1777 var/empty
    chmod 2750 etc/app
    chmod 600 etc/app/config
    setfattr -n user.note -v hello etc/app/config
    truncate -s 5000000 var/sparse
    """
    let r = try sh(script, cwd: root)
    if r.status != 0 { throw LayersError.invalidArgument("making the tree failed: \(r.output)") }
    if isRoot {
        let r2 = try sh("""
        chown 1000:1001 etc/app/config
        chown -h 123:456 usr/bin/cfg-link
        mknod dev-null c 1 3
        mknod dev-loop b 7 0
        setcap cap_net_raw+ep usr/bin/big 2>/dev/null || setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= usr/bin/big
        setfattr -n trusted.secret -v 42 etc/app
        """, cwd: root)
        if r2.status != 0 { throw LayersError.invalidArgument("making the root-only entries failed: \(r2.output)") }
    }
    // Fixed times, so that trees made at different moments compare equal.
    _ = try sh("find . -exec touch -h -d @1700000000 {} +", cwd: root)
}
