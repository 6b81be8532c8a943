import Foundation
import Host
import OCI
import QcowIO

/// The hand-off manifest, `out/NAME/handoff.json`: everything a consumer of the built images needs
/// (the runtime benchmark suite reads this file alone). Paths are relative to the manifest's
/// folder. Versioned (`schemaVersion`), described in `docs/handoff-schema.json`; fields are only
/// ever added within a version.
public struct Handoff: Codable, Equatable, Sendable {
    public static let currentSchemaVersion = 1
    public static let fileName = "handoff.json"

    public var schemaVersion = Handoff.currentSchemaVersion
    public var recipe: RecipeInfo
    /// The build report (`report.json`).
    public var report: String
    public var container: Container?
    public var vm: VM?

    public struct RecipeInfo: Codable, Equatable, Sendable {
        public var name: String
        /// The recipe file as the build was given it.
        public var file: String
        /// The workloads the recipe declares its image carries (`# workloads=`).
        public var workloads: [String]
    }

    public struct Container: Codable, Equatable, Sendable {
        public var ociLayout: String
        /// The tag of the image in the layout (the recipe's name).
        public var imageReference: String
        /// The manifest digest of the image.
        public var imageDigest: String
        /// The OCI runtime bundle: `config.json` and `rootfs/`.
        public var bundle: String
    }

    public struct VM: Codable, Equatable, Sendable {
        /// The qcow2 chain, base first, each backed by the one before.
        public var chain: [String]
        /// The flattened, standalone qcow2 disk.
        public var disk: String
        public var diskFormat: String
        public var virtualSize: UInt64?
        public var boot: Boot
    }

    /// How the disk boots: QEMU's direct kernel boot with these files and this command line
    /// (the disk is a filesystem with no bootloader).
    public struct Boot: Codable, Equatable, Sendable {
        public var method: String
        public var kernel: String
        public var initrd: String?
        public var commandLine: String
    }

    /// The manifest of a finished build, from its report.
    public init(report r: BuildReport, workloads: [String]) {
        recipe = RecipeInfo(name: r.recipe, file: r.recipeFile, workloads: workloads)
        report = "report.json"
        let o = r.outputs
        if let layout = o.ociLayout, let digest = o.imageDigest, let bundle = o.bundle {
            container = Container(ociLayout: layout, imageReference: r.recipe, imageDigest: digest, bundle: bundle)
        }
        if let disk = o.vmDisk, let kernel = o.kernel {
            vm = VM(chain: o.vmChain ?? [], disk: disk, diskFormat: "qcow2", virtualSize: r.totals.vmVirtualSize,
                    boot: Boot(method: "direct-kernel", kernel: kernel, initrd: o.initrd,
                               commandLine: o.kernelCommandLine ?? "root=/dev/vda rw console=ttyS0"))
        }
    }

    /// Writes `handoff.json` into a build's output folder.
    public func write(into folder: String) throws {
        try CanonicalJSON.pretty(self).write(to: URL(fileURLWithPath: "\(folder)/\(Handoff.fileName)"))
    }

    /// Reads a manifest: `handoff.json` itself or a build folder holding one. Returns it with the
    /// folder its paths are relative to, absolute: the runtime suite hands them to runc (which
    /// resolves a bind mount's source from its bundle) and to a workload's shell.
    public static func load(_ path: String) throws -> (handoff: Handoff, folder: String) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw HostError.io(path: path, message: "no such hand-off manifest (out/NAME/handoff.json, written by imgbench build)")
        }
        let file = LexicalPath.absolute(isDir.boolValue ? "\(path)/\(fileName)" : path)
        guard let data = FileManager.default.contents(atPath: file) else {
            throw HostError.io(path: file, message: "cannot read the hand-off manifest")
        }
        let h: Handoff
        do {
            h = try JSONDecoder().decode(Handoff.self, from: data)
        } catch let e as DecodingError {
            throw HostError.io(path: file, message: "not a hand-off manifest: at \(DecodingErrorText.place(of: e)): \(DecodingErrorText.problem(of: e))")
        } catch {
            throw HostError.io(path: file, message: "not a hand-off manifest: \(error)")
        }
        guard h.schemaVersion == currentSchemaVersion else {
            throw HostError.io(path: file, message: "schemaVersion \(h.schemaVersion) is not one this imgbench reads (\(currentSchemaVersion))")
        }
        let folder = (file as NSString).deletingLastPathComponent
        return (h, folder.isEmpty ? "." : folder)
    }
}
