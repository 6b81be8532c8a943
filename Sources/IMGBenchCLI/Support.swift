import ArgumentParser
import Foundation
import Host
import ImageBuild
import Layers
import OCI
import QcowIO
import RecipePlan

/// Sizes as people write them on the command line (see `ByteCount`).
public struct ByteSize: ExpressibleByArgument, Sendable, Equatable {
    public var bytes: UInt64

    public init(bytes: UInt64) { self.bytes = bytes }

    public init?(argument: String) {
        guard let b = ByteCount.parse(argument) else { return nil }
        bytes = b
    }

    public static func format(_ bytes: UInt64) -> String { ByteCount.format(bytes) }

    /// A cluster size option checked in `validate()` before it is made an `Int`
    /// (`--cluster-size 18446744073709551615` trapped there); the library checks the rest.
    func validateClusterSize() throws {
        guard Int(exactly: bytes) != nil else {
            throw ValidationError("--cluster-size: \(bytes) is not a power of two from 512 to 2M")
        }
    }

    /// As the option is written: `64K`, `2M`, `512`.
    public var defaultValueDescription: String {
        for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] as [(String, UInt64)]
        where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(unit)"
        }
        return "\(bytes)"
    }
}

// Options with a fixed set of values are these enums, so that `--help` and shell completion list
// the values and a wrong one is refused the same way everywhere (exit 64, the usage error).
extension StorageDriverKind: ExpressibleByArgument {}
extension BootCheck.Accelerator: ExpressibleByArgument {}
extension VMPass.Backend: ExpressibleByArgument {}
extension Sandbox.Network: ExpressibleByArgument {}

/// Every path the command line takes is made absolute here, once, against the working folder:
/// `transform: absolutePath` on the argument or option, and on a default made in `run()`. The
/// libraries hand paths to programs that run elsewhere (qemu-storage-daemon changes to /, runc
/// takes bind mounts from its bundle, a step's shell runs in the image) and compare them with
/// the mount table, where a relative path names another file or none. A qcow2 backing file is
/// the exception: it is stored as given, relative to its image's folder.
func absolutePath(_ argument: String) -> String { LexicalPath.absolute(argument) }

/// JSON as every report writes it: pretty-printed, keys sorted.
enum JSONOutput {
    static func string<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try CanonicalJSON.pretty(value), as: UTF8.self)
    }
}

/// A plain table: columns padded to their widest cell, numbers right-aligned.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []

    func render() -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0.count > i ? $0[i].count : 0 }.max() ?? 0 }
        func line(_ r: [String]) -> String {
            r.enumerated().map { i, cell in
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                return cell.first.map { $0.isNumber } == true && i > 0 ? pad + cell : cell + pad
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        return ([line(header), widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + rows.map(line))
            .joined(separator: "\n")
    }
}

/// Progress lines on stderr: redrawn in place on a terminal, one line per step otherwise.
final class TerminalProgress: @unchecked Sendable {
    let label: String
    let live: Bool
    let enabled: Bool
    private var lastPercent = -1
    private var lastDraw = Date.distantPast

    init(label: String, mode: ProgressMode) {
        self.label = label
        enabled = !mode.isQuiet
        live = mode.isLive
    }

    func update(_ done: UInt64, _ total: UInt64) {
        guard enabled, total > 0 else { return }
        let percent = Int(done * 100 / total)
        if live {
            guard percent != lastPercent, Date().timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
            lastDraw = Date()
            FileHandle.standardError.write(Data("\r\(label): \(percent)%".utf8))
            if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if percent / 10 != lastPercent / 10 || done == total {
            FileHandle.standardError.write(Data("\(label): \(percent)%\n".utf8))
        }
        lastPercent = percent
    }
}

/// Runs a command body, turning library errors into one clear line and an exit status.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as QcowError {
        FileHandle.standardError.write(Data("imgbench: error: \(e.description)\n".utf8))
        throw ExitCode(1)
    } catch let HostError.interrupted(signal) {
        let released = Cleanup.runAll()
        FileHandle.standardError.write(Data("\nimgbench: interrupted\(released.isEmpty ? "" : "; released \(released.joined(separator: ", "))")\n".utf8))
        throw ExitCode(128 + signal)
    } catch let e where e is LayersError || e is OCIError || e is HostError {
        FileHandle.standardError.write(Data("imgbench: error: \(e)\n".utf8))
        throw ExitCode(1)
    }
}

func printOut(_ s: String) {
    FileHandle.standardOutput.write(Data((s + "\n").utf8))
}

func printErr(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

/// More threads than this is a mistake, not a machine: `--threads` is refused past it.
let maxThreads = 1024

/// The errors of the libraries that the command line reports as one line naming the file and
/// the place (each module's own error type).
func isReported(_ e: Error) -> Bool {
    e is BuildError || e is HostError || e is LayersError || e is OCIError || e is RecipeError
        || e is DocumentError || e is QcowError
}
