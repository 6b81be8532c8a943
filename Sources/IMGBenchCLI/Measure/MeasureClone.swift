import ArgumentParser
import Foundation
import Measure

/// `imgbench measure clone IMAGE`: bytes and time of one more instance.
struct MeasureClone: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clone",
        abstract: "Start N instances' storage from a built image and report bytes and milliseconds per clone, beside a full copy.",
        discussion: """
            IMAGE is an output folder of imgbench build (out/NAME). Container: on each storage \
            driver, a writable layer on the image's top layer plus a runtime bundle whose root is \
            that layer (the image is imported into the driver first, not counted). VM: a qcow2 \
            overlay backed by the flattened disk. Full copies for contrast: the image's root copied \
            with cp -a --sparse=always, and the flattened disk written again as a standalone qcow2.
            """)

    @Argument(help: "An output folder of imgbench build (out/NAME).", transform: absolutePath) var image: String
    @Option(help: "Clones per storage (all up at once).") var count = 5
    @OptionGroup var rounds: DriverRounds
    @OptionGroup var options: MeasureOptions

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        let scratch = "\(image).measure-clone-\(getpid())"
        let result = try measuring(scratch) {
            let m = CloneMeasurement(image: try BuiltImage(folder: image), count: count, repeats: rounds.repeat,
                                     drivers: rounds.driverList, workdir: scratch)
            return try m.run { printErr("==> \($0)") }
        }
        try options.emit(result) { Self.table(result) }
    }

    static func table(_ r: CloneMeasurement.Result) -> String {
        var t = TextTable(header: ["side", "storage", "bytes per clone", "ms per clone", "notes"])
        for row in r.rows {
            t.rows.append([row.kind, row.storage, row.bytes?.render(bytesText) ?? "-",
                           row.milliseconds?.render { String(format: "%.1f", $0) } ?? "-",
                           row.available ? (row.fullCopy ? "full copy, for contrast" : "") : "unavailable: \(row.reason ?? "")"])
        }
        var lines = [t.render(), ""]
        lines.append("\(r.recipe): \(r.count) clones per storage, \(r.repeats) round(s); median (min-max) where they differ")
        if let u = r.imageUncompressedBytes { lines.append("image: \(ByteSize.format(u)) uncompressed layers") }
        if let v = r.vmFlattenedAllocatedBytes { lines.append("vm: flattened disk \(ByteSize.format(v)) allocated") }
        return lines.joined(separator: "\n")
    }
}
