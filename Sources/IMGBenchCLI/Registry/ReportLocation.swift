import Foundation
import Host
import ImageBuild
import Publish
import Registry

/// A report named on the command line: a file (made absolute), or, when no file has that name
/// and it reads as one (`ImageReference.looksLikeRegistryReference`), an image in a registry
/// whose `report.json` `imgbench push` attached.
struct ReportLocation {
    /// The file's absolute path, or the reference as given.
    let name: String
    let reference: ImageReference?

    init(_ text: String) throws {
        if !FileManager.default.fileExists(atPath: text) && ImageReference.looksLikeRegistryReference(text) {
            reference = try ImageReference(parsing: text)
            name = text
        } else {
            reference = nil
            name = absolutePath(text)
        }
    }

    /// The report's bytes, from the file or from the registry (one GET of the manifest, of the
    /// referrers, of the artifact and its file).
    func read(_ access: RegistryAccessFlags) throws -> Data {
        guard let reference else {
            guard let data = FileManager.default.contents(atPath: name) else { throw HostError.io(path: name, message: "cannot read") }
            return data
        }
        let options = access.clientOptions
        return try Blocking.run { try await AttachedArtifact.report(of: reference, options: options) }
    }

    /// The build report.
    func load(_ access: RegistryAccessFlags) throws -> BuildReport {
        reference == nil ? try BuildReport.load(name) : try BuildReport.decode(try read(access), path: "\(name) (its report.json)")
    }
}
