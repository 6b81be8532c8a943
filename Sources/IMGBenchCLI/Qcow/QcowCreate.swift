import ArgumentParser
import QcowIO

struct QcowCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create an empty qcow2 v3 image, optionally backed by another image.")

    @Argument(help: "The image to create.", transform: absolutePath) var image: String
    @Argument(help: "Virtual size (e.g. 10G); defaults to the backing file's size.") var size: ByteSize?
    @Option(help: "Cluster size, 512 to 2M.") var clusterSize = ByteSize(bytes: 65536)
    @Option(help: "Refcount width in bits (1 to 64).") var refcountBits = 16
    @Option(name: [.short, .customLong("backing")], help: "Backing file, stored as given (relative to the new image's folder).")
    var backing: String?
    @Option(name: [.customShort("F"), .customLong("backing-format")], help: "Backing file format: qcow2 or raw (probed when left out).")
    var backingFormat: String?

    func validate() throws {
        if size == nil && backing == nil { throw ValidationError("give a size, a backing file, or both") }
        try clusterSize.validateClusterSize()
    }

    func run() throws {
        try reportingErrors {
            var format = backingFormat
            if let b = backing, format == nil {
                format = try DiskImages.probe(QcowImage.resolve(backing: b, relativeTo: image))
            }
            let img = try QcowImage.create(path: image, options: Qcow2CreateOptions(
                virtualSize: size?.bytes ?? 0, clusterSize: Int(clusterSize.bytes), refcountBits: refcountBits,
                backingFile: backing, backingFormat: format))
            printOut("created \(image): qcow2 v3, virtual size \(img.virtualSize) (\(ByteSize.format(img.virtualSize))), cluster \(img.clusterSize)"
                + (backing.map { ", backing \($0) (\(format ?? "?"))" } ?? ""))
            try img.close()
        }
    }
}
