import ArgumentParser
import Foundation
import Host
import OCI
import Publish
import Registry

/// How a registry is reached: the options of every command that talks to one (build too).
struct RegistryAccessFlags: ParsableArguments {
    @Option(help: "A folder of certificates for the registry (containers-certs.d layout: *.crt CAs, NAME.cert and NAME.key a client certificate). Default: /etc/containers/certs.d/REGISTRY or /etc/docker/certs.d/REGISTRY when present.", transform: absolutePath)
    var certDir: String?
    @Option(help: "Verify the registry's TLS certificate (false also allows plain HTTP to any registry; plain HTTP is always allowed to localhost and 127.0.0.0/8).")
    var tlsVerify = true

    var clientOptions: RegistryClient.Options {
        var o = RegistryClient.Options()
        o.tls = TLSSettings(verify: tlsVerify, certDir: certDir)
        return o
    }
}

/// The options of push and pull.
struct RegistryFlags: ParsableArguments {
    @OptionGroup var access: RegistryAccessFlags
    @Option(help: "Blobs larger than this go up in chunks of this size (PATCH with Content-Range), so a lost connection costs one chunk; smaller ones in one request. Both are streamed from the file.")
    var chunkSize = ByteSize(bytes: 256 << 20)
    @Option(help: "The tag of the VM's containerDisk image is the image's tag followed by this.")
    var vmTagSuffix = "-vm"
    @Option(help: "push: a repository of the same registry whose blobs are mounted rather than uploaded again (one that an earlier push filled).")
    var mountFrom: String?
    @Option(help: "auto (a live display on a terminal, plain lines otherwise), plain, tty or quiet.") var progress: ProgressMode = .auto

    func validate() throws {
        guard chunkSize.bytes >= 64 << 10, chunkSize.bytes <= 1 << 30 else {
            throw ValidationError("--chunk-size must be between 64K and 1G")
        }
    }

    /// The settings of a push or a pull, its progress lines labelled with `verb`.
    func settings(_ verb: String) -> TransferSettings {
        var o = access.clientOptions
        o.chunkSize = Int(chunkSize.bytes)
        var s = TransferSettings(options: o)
        s.vmTagSuffix = vmTagSuffix
        s.progress = transferProgress(verb)
        s.note = notes()
        s.mountFrom = mountFrom
        return s
    }

    /// A progress line per blob on stderr (`--progress`).
    func transferProgress(_ verb: String) -> TransferProgress? {
        guard !progress.isQuiet else { return nil }
        let bars = BlobBars(verb: verb, mode: progress)
        let report: TransferProgress = { (digest: OCI.Digest, done: Int64, total: Int64) in bars.update(digest, done, total) }
        return report
    }

    func notes() -> (@Sendable (String) -> Void)? {
        guard !progress.isQuiet else { return nil }
        return { printErr("==> \($0)") }
    }
}

/// One `TerminalProgress` per blob.
final class BlobBars: @unchecked Sendable {
    let verb: String
    let mode: ProgressMode
    private let lock = NSLock()
    private var bars: [String: TerminalProgress] = [:]

    init(verb: String, mode: ProgressMode) {
        self.verb = verb
        self.mode = mode
    }

    func update(_ digest: OCI.Digest, _ done: Int64, _ total: Int64) {
        let bar = lock.withLock {
            if let b = bars[digest.hex] { return b }
            let b = TerminalProgress(label: "\(verb) \(digest.hex.prefix(12)) (\(ByteSize.format(UInt64(max(total, 0)))))", mode: mode)
            bars[digest.hex] = b
            return b
        }
        bar.update(UInt64(max(done, 0)), UInt64(max(total, 0)))
    }
}

/// A reference given on the command line, or a usage error.
func parseReference(_ text: String) throws -> ImageReference {
    do { return try ImageReference(parsing: text) } catch { throw ValidationError("\(error)") }
}

/// Runs an async command body, turning library errors into one clear line and exit 1; Ctrl-C
/// removes what the body registered with `Cleanup` (a push's scratch, a pull's partial folder).
func reportingRegistryErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await Interrupts.releasing { try await body() }
    } catch let HostError.interrupted(signal) {
        let released = Cleanup.runAll()
        printErr("\nimgbench: interrupted\(released.isEmpty ? "" : "; released \(released.joined(separator: ", "))")")
        throw ExitCode(128 + signal)
    } catch let e where e is RegistryError || isReported(e) {
        printErr("imgbench: error: \(e)")
        throw ExitCode(1)
    }
}
