import Foundation
import Host
import Layers
import OCI

/// What a build measured, as written to `report.json`. The schema is versioned
/// (`schemaVersion`) and described in `docs/report-schema.json`; fields are only ever added
/// within a version.
public struct BuildReport: Codable, Equatable, Sendable {
    public static let currentSchemaVersion = 1

    public var schemaVersion = BuildReport.currentSchemaVersion
    public var recipe: String
    public var recipeFile: String
    /// "container", "vm" or both.
    public var targets: [String]
    public var startedAt: String
    public var base: Phase
    public var steps: [StepReport]
    /// The steps of the earlier stages the target copies from (multi-stage recipes), each marked
    /// with its stage: built on the container side only, not counted in `totals`; nil when none.
    public var stageSteps: [StepReport]? = nil
    /// Making the VM disk bootable (kernel, initramfs, fstab, boot files).
    public var finalisation: Phase?
    public var totals: Totals
    public var outputs: Outputs
    /// Where and from what the build was made (nil in reports written before it was recorded).
    public var provenance: Provenance? = nil
    /// What a machine running the baseline build (`imgbench build --baseline DIR`) downloads to
    /// run this one; nil without a baseline.
    public var update: UpdateDelta? = nil

    /// One side of one phase or step.
    public struct Measure: Codable, Equatable, Sendable {
        /// What this build spent on it: the whole work when it was made now, the cache lookup
        /// when it was a cache hit.
        public var seconds: Double
        public var cacheHit: Bool
        /// What it cost when it was made, kept with its cache entry: `seconds` when it was made
        /// now; nil for a cache entry recorded before the cost was kept.
        public var builtSeconds: Double?
        /// A container base layer made now: the seconds of its making that ran beside the first
        /// steps (the capture and compression of its blob, once its driver layer was ready). In
        /// `builtSeconds`, not in `seconds`, which is what the side waited for.
        public var besideStepsSeconds: Double?
        /// Container: the layer's bytes, compressed (as stored) and uncompressed (the tar).
        public var layerCompressedBytes: UInt64?
        public var layerUncompressedBytes: UInt64?
        public var layerDigest: String?
        /// Container step made now: the seconds from the end of its work to its layer's blob
        /// (the capture, its compression and hashes), and the bytes of the layer's tar whose gzip
        /// members were compressed while the work ran (`EarlyCompression`) and taken by it.
        public var captureSeconds: Double?
        public var earlyCompressedBytes: UInt64?
        /// VM: the bytes this step's qcow2 overlay allocates (guest data it holds) and its file's
        /// size on disk.
        public var qcow2AllocatedBytes: UInt64?
        public var qcow2DiskBytes: UInt64?
        /// Bytes this step carries that the finished image does not use.
        public var wasted: Waste?
        /// The finalisation of a `vm-boot=firmware` disk: what making a container root into a VM
        /// that boots on its own costs, part by part.
        public var finalisation: Finalisation?
        /// What its apt fetched through the package cache, and what the cache saved it; nil when
        /// nothing went through the cache (a cache hit, a step without apt).
        public var packages: PackageTraffic?

        public init(seconds: Double, cacheHit: Bool) {
            self.seconds = seconds
            self.cacheHit = cacheHit
        }
    }

    /// apt's downloads through the package cache (`PackageCache`).
    public struct PackageTraffic: Codable, Equatable, Sendable {
        /// Bytes that came from the archive: packages and by-hash indexes fetched (and kept), and
        /// what is never kept (InRelease files).
        public var downloadedBytes: UInt64
        /// Packages and indexes served from the cache: downloads saved.
        public var fromCacheBytes: UInt64
        public var downloadedFiles: Int
        public var fromCacheFiles: Int

        /// nil when nothing went through the cache.
        init?(_ c: PackageProxy.Counts) {
            guard c.fetchedBytes + c.passedBytes + c.reusedBytes > 0 else { return nil }
            downloadedBytes = c.fetchedBytes + c.passedBytes
            fromCacheBytes = c.reusedBytes
            downloadedFiles = c.fetchedFiles
            fromCacheFiles = c.reusedFiles
        }
    }

    /// What the finalisation of a `vm-boot=firmware` disk adds, part by part, and the bytes its
    /// overlay allocated before and after freed blocks were discarded (fstrim).
    public struct Finalisation: Codable, Equatable, Sendable {
        public struct Part: Codable, Equatable, Sendable {
            public var name: String
            public var seconds: Double
            /// The root filesystem's used bytes after the part less those before it (statvfs).
            public var filesystemBytes: Int64
        }
        public var parts: [Part] = []
        public var allocatedBeforeTrim: UInt64?
        public var allocatedAfterTrim: UInt64?
    }

    /// Bytes a step or an image carries but does not use, by cause: an object, so that other
    /// causes are added as fields beside the first.
    public struct Waste: Codable, Equatable, Sendable {
        /// Container: bytes of regular files in this layer that a later layer of the image deletes
        /// (whiteout, opaque directory) or replaces with an entry of the same path
        /// (`WastedBytes.perLayer`); pulled and stored, never seen in a container.
        public var overwrittenLaterBytes: UInt64?
        /// Container: bytes of package caches and lists (`WastedBytes.cachePrefixes`: apt's
        /// archives and lists, npm's and pip's caches, /tmp) that this layer leaves in the image.
        public var cachesLeftBytes: UInt64?

        public init(overwrittenLaterBytes: UInt64? = nil, cachesLeftBytes: UInt64? = nil) {
            self.overwrittenLaterBytes = overwrittenLaterBytes
            self.cachesLeftBytes = cachesLeftBytes
        }

        /// The wasted bytes: the sum of the causes the report gives (nil when it gives none).
        public var total: UInt64? {
            let causes = [overwrittenLaterBytes, cachesLeftBytes].compactMap { $0 }
            return causes.isEmpty ? nil : causes.reduce(0, +)
        }
    }

    public struct Phase: Codable, Equatable, Sendable {
        public var description: String
        public var key: String
        public var container: Measure?
        public var vm: Measure?
    }

    public struct StepReport: Codable, Equatable, Sendable {
        public var index: Int
        public var instruction: String
        /// file:line:column of the instruction.
        public var location: String
        public var target: String
        public var key: String
        /// False for metadata steps (ENV, LABEL, ...): `empty_layer` in the image history.
        public var changesFiles: Bool
        public var container: Measure?
        public var vm: Measure?
        /// The stage the step is written in, by name (its number when it has none), in a recipe
        /// of several stages; nil in a recipe of one.
        public var stage: String? = nil
    }

    public struct Totals: Codable, Equatable, Sendable {
        public var seconds: Double
        public var containerSeconds: Double?
        public var vmSeconds: Double?
        /// What each side cost when its steps were made (the sum of their `builtSeconds`; nil
        /// when one of them does not say).
        public var containerBuiltSeconds: Double?
        public var vmBuiltSeconds: Double?
        public var cacheHits: Int
        public var cacheMisses: Int
        public var imageCompressedBytes: UInt64?
        public var imageUncompressedBytes: UInt64?
        /// Bytes allocated by every link of the VM chain, and by the flattened disk.
        public var vmChainAllocatedBytes: UInt64?
        public var vmFlattenedAllocatedBytes: UInt64?
        public var vmFlattenedDiskBytes: UInt64?
        public var vmVirtualSize: UInt64?
        /// The image's wasted bytes, summed over its layers.
        public var wasted: Waste?
        /// How the two sides ran: "concurrent" (at the same time, sharing the machine: each side's
        /// seconds are its own, taken beside the other) or "serial" (`--serial`, or one side only).
        public var sides: String?
        /// apt's downloads of the whole build through the package cache (base, stages, steps and
        /// finalisation, both sides); nil without the cache.
        public var packages: PackageTraffic?
        /// The HTTP proxy the package cache reached the archive through (`http_proxy`, without
        /// its credentials); nil: directly.
        public var packagesThrough: String?
    }

    public struct Outputs: Codable, Equatable, Sendable {
        public var folder: String
        /// Paths relative to `folder`.
        public var ociLayout: String?
        /// The manifest digest of the image, tagged with the recipe's name in the layout.
        public var imageDigest: String?
        public var bundle: String?
        /// The VM chain, base first, each backed by the one before.
        public var vmChain: [String]?
        public var vmDisk: String?
        public var kernel: String?
        public var initrd: String?
        public var kernelCommandLine: String?
        /// How the disk boots: `kernel` (QEMU is given the kernel) or `firmware` (GPT, GRUB for
        /// BIOS and UEFI, systemd: it boots on its own).
        public var vmBoot: String?
        /// A firmware disk's EXPOSEd ports (`8080/tcp`), which its service is expected to serve.
        public var exposedPorts: [String]?
        /// The disk in the other formats asked for (`--vm-format`).
        public var vmFormats: [VMFormatOutput]?
        /// libvirt domain XML beside a firmware disk, by firmware (`uefi`, `bios`).
        public var libvirtDomains: [String: String]?
    }

    /// One format of the flattened disk (`VMFormats`).
    public struct VMFormatOutput: Codable, Equatable, Sendable {
        public var format: String
        /// Relative to the output folder: a file, or the containerDisk's OCI layout folder.
        public var path: String
        /// Bytes it occupies on disk.
        public var diskBytes: UInt64
        public var seconds: Double
    }
}

extension BuildReport {
    /// Reads a `report.json`; errors name the file and the JSON path of what is wrong.
    public static func load(_ path: String) throws -> BuildReport {
        try decode(try DocumentError.contents(of: path, what: "a report.json written by imgbench build"), path: path)
    }

    /// The sum of the measures' `builtSeconds`, nil when one of them lacks it.
    public static func builtSeconds(_ measures: [Measure]) -> Double? {
        measures.reduce(0 as Double?) { sum, m in sum.flatMap { s in m.builtSeconds.map { s + $0 } } }
    }

    /// A `report.json`'s content, read already; `path` names it in errors.
    public static func decode(_ data: Data, path: String) throws -> BuildReport {
        let report = try DocumentError.decode(BuildReport.self, from: data, path: path, what: "a build report")
        guard report.schemaVersion <= currentSchemaVersion else {
            throw DocumentError.invalid(place: "\(path): at schemaVersion",
                                    message: "schema version \(report.schemaVersion) is newer than this imgbench reads (\(currentSchemaVersion))")
        }
        return report
    }
}

extension DocumentError {
    /// Decodes a document from a file's bytes; errors name the file and the JSON path.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, path: String, what: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let e as DecodingError {
            let (place, problem) = DecodingErrorText.describe(e, decoding: T.self, from: data)
            throw DocumentError.invalid(place: "\(path): at \(place)", message: problem)
        } catch {
            throw DocumentError.invalid(place: path, message: "not \(what): \(error)")
        }
    }

    /// A file's bytes; a missing or unreadable file is named with what it should be.
    public static func contents(of path: String, what: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else {
            let why = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file"
            throw DocumentError.unreadable(path: path, message: "\(why) (\(what))")
        }
        return data
    }
}

/// A document imgbench reads (a report.json, a budget) that cannot be read or does not mean
/// anything, naming the file and the place in it.
public enum DocumentError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(path: String, message: String)
    /// `place` is `file: at json.path` or `file:line:column`.
    case invalid(place: String, message: String)

    public var description: String {
        switch self {
        case let .unreadable(path, message): return "\(path): \(message)"
        case let .invalid(place, message): return "\(place): \(message)"
        }
    }
}

/// What a result file holds, by its `kind` field (a build report has none; it is told by its steps
/// and totals): what `imgbench report` reads, and what it refuses.
public enum ResultKind: String, Codable, Sendable, CaseIterable {
    case build, clone, cow, wasted, run
}

extension ResultKind {
    /// The kind of a result file's JSON object: its `kind`, or a build report by its steps and
    /// totals; nil for anything else.
    public static func of(_ object: [String: Any]) -> ResultKind? {
        (object["kind"] as? String).flatMap(ResultKind.init(rawValue:))
            ?? (object["kind"] == nil && object["steps"] != nil && object["totals"] != nil ? .build : nil)
    }

    /// The kind of a result file's bytes; nil when they are not a JSON object of a known kind.
    public static func of(_ data: Data) -> ResultKind? {
        ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]).flatMap { of($0) }
    }
}
