import Crypto
import Foundation
import Host
import OCI
import RecipePlan

// ADD of a URL or a git repository, as docker does it: an http(s) file is downloaded (mode 0600,
// never unpacked; `--checksum=sha256:HEX` checked), a repository cloned at its ref (its .git
// folder left out unless `--keep-git-dir`), then copied as a context file is.
extension Builder {
    /// Fetches each remote source of `s` into a private folder and copies it to `destination`;
    /// a source that cannot be fetched stops the step with its place and its URL.
    func addRemote(_ s: Step, sources: [String], in disk: Workspace, destination: String, chown: String?, chmod: String?) throws {
        for source in sources {
            guard let remote = RemoteSource(source) else { continue }
            let stage = try TemporaryFolder.make(prefix: "imgbench-add")
            defer { try? FileSystem.removeTree(stage) }
            let name: String
            switch remote {
            case let .http(url):
                name = remote.fileName
                try download(url, to: "\(stage)/\(name)", checksum: s.flags["checksum"], step: s)
            case let .git(repository, ref):
                name = "repository"
                try clone(repository, ref: ref, into: "\(stage)/\(name)", keepGitDir: s.flags["keep-git-dir"] == "true", step: s)
            }
            let copy = ContextCopy(context: stage, ignore: ContextIgnore(patterns: []), location: s.location)
            if case .git = remote {
                // A repository's files go into the destination folder, as a context folder's do.
                try disk.copy(copy, sources: [name], destination: destination.hasSuffix("/") ? destination : destination + "/", chown: chown, chmod: chmod, add: false)
            } else {
                try disk.copy(copy, sources: [name], destination: destination, chown: chown, chmod: chmod, add: false)
            }
        }
    }

    /// The environment of curl and git: the host's PATH and proxy settings.
    static var fetchEnvironment: [String: String] {
        var env = ["PATH": Sandbox.defaultPath, "HOME": "/root", "GIT_TERMINAL_PROMPT": "0"]
        for (k, v) in ProcessInfo.processInfo.environment where k.lowercased().hasSuffix("_proxy") { env[k] = v }
        return env
    }

    func download(_ url: String, to path: String, checksum: String?, step s: Step) throws {
        events.note("ADD: downloading \(url)")
        let r = try Command.run(["curl", "--fail", "--silent", "--show-error", "--location", "--proto", "=http,https",
                                 "--connect-timeout", "30", "--max-time", "3600", "--output", path, url],
                                environment: Builder.fetchEnvironment, onOutput: onOutput)
        guard r.status == 0 else {
            throw BuildError.invalid("\(s.location): ADD \(url): cannot be fetched (no network here, or the server refused): \(Command.tail(r.output, lines: 3).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        if let checksum {
            var sha = SHA256()
            try FileSystem.readChunks(path) { sha.update(data: $0) }
            let found = Digest(sha.finalize()).description
            guard found == checksum else {
                throw BuildError.invalid("\(s.location): ADD \(url): its content is \(found), not --checksum=\(checksum)")
            }
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    }

    func clone(_ repository: String, ref: String?, into path: String, keepGitDir: Bool, step s: Step) throws {
        events.note("ADD: cloning \(repository)" + (ref.map { " at \($0)" } ?? ""))
        func git(_ args: [String]) throws {
            let r = try Command.run(["git"] + args, environment: Builder.fetchEnvironment, onOutput: onOutput)
            guard r.status == 0 else {
                throw BuildError.invalid("\(s.location): ADD \(repository)\(ref.map { "#" + $0 } ?? ""): cannot be fetched (no network here, or the server refused): \(Command.tail(r.output, lines: 3).trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        }
        try git(["clone", "--quiet", "--no-checkout", repository, path])
        try git(["-C", path, "checkout", "--quiet", "--detach", ref ?? "HEAD"])
        if !keepGitDir { try FileSystem.removeTree("\(path)/.git") }
    }
}
