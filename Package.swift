// swift-tools-version: 6.0
import PackageDescription

// Modules along the data flow, from the bottom up (README, "Architecture"):
//   Host → QcowIO, OCI, Registry → Layers → RecipePlan → ImageBuild → Measure, RuntimeSuite, Repro, Publish → Gate → IMGBenchCLI
// No module imports one later in the flow.
let package = Package(
    name: "imgbench",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "imgbench", targets: ["imgbench"]),
        .library(name: "Host", targets: ["Host"]),
        .library(name: "QcowIO", targets: ["QcowIO"]),
        .library(name: "OCI", targets: ["OCI"]),
        .library(name: "Registry", targets: ["Registry"]),
        .library(name: "Layers", targets: ["Layers"]),
        .library(name: "RecipePlan", targets: ["RecipePlan"]),
        .library(name: "ImageBuild", targets: ["ImageBuild"]),
        .library(name: "Measure", targets: ["Measure"]),
        .library(name: "RuntimeSuite", targets: ["RuntimeSuite"]),
        .library(name: "Repro", targets: ["Repro"]),
        .library(name: "Publish", targets: ["Publish"]),
        .library(name: "Gate", targets: ["Gate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // The size budget of `imgbench check` is YAML.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // The registry client: HTTP/1.1 with NIO SSL, which takes custom trust roots and client certificates.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C libraries, each wrapped once and imported only by the module that needs it.
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CArchive", path: "Sources/CArchive", pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(
            name: "CGuestfs", path: "Sources/CGuestfs", pkgConfig: "libguestfs",
            providers: [.apt(["libguestfs-dev"])]),
        .systemLibrary(
            name: "CDeflate", path: "Sources/CDeflate", pkgConfig: "libdeflate",
            providers: [.apt(["libdeflate-dev"])]),
        .systemLibrary(
            name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),
        // Extended attributes, mount(2) and statfs(2) from glibc, which the Glibc module leaves out.
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),

        // The host: the one place that starts a process, mounts, handles signals and cleans up.
        .target(name: "Host", dependencies: ["CLinux"]),
        .testTarget(name: "HostTests", dependencies: ["Host", "TestSupport"]),

        // qcow2, knowing nothing of recipes or containers.
        .target(name: "QcowIO", dependencies: ["CZlib", "Host"]),
        .testTarget(name: "QcowIOTests", dependencies: ["QcowIO", "TestSupport"]),

        // The OCI image spec's types, the image layout and its blob store.
        .target(
            name: "OCI",
            dependencies: ["Host", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "OCITests", dependencies: ["OCI", "TestSupport"]),

        // The OCI distribution client (distribution-spec 1.1), beside the types it moves.
        .target(
            name: "Registry",
            dependencies: [
                "Host", "OCI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "TestSupport"]),

        // File-level layers: capture, apply, compression, storage drivers, wasted bytes.
        .target(
            name: "Layers",
            dependencies: [
                "Host", "OCI", "CArchive", "CDeflate", "CZstd",
            ]),
        .testTarget(name: "LayersTests", dependencies: ["Layers", "TestSupport"]),

        // The recipe (Containerfile) and the plan of steps with their cache keys.
        .target(
            name: "RecipePlan",
            dependencies: ["Host", "OCI", "Registry", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "RecipePlanTests", dependencies: ["RecipePlan", "TestSupport"]),

        // The build: base, container pass, VM pass, finalisation, outputs and the hand-off.
        .target(
            name: "ImageBuild",
            dependencies: [
                "Host", "QcowIO", "OCI", "Registry", "Layers", "RecipePlan", "CGuestfs",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .testTarget(name: "ImageBuildTests", dependencies: ["ImageBuild", "RecipePlan", "Host", "OCI", "QcowIO", "TestSupport"]),

        // Consumers of built outputs.
        .target(name: "Measure", dependencies: ["Host", "QcowIO", "OCI", "Layers", "RecipePlan", "ImageBuild"]),
        .testTarget(name: "MeasureTests", dependencies: ["Measure", "TestSupport"]),
        .target(name: "RuntimeSuite", dependencies: ["Host", "RecipePlan", "ImageBuild"]),
        .testTarget(name: "RuntimeSuiteTests", dependencies: ["RuntimeSuite", "TestSupport"], exclude: ["Fixtures"]),
        .target(name: "Repro", dependencies: ["Host", "QcowIO", "OCI", "Layers", "RecipePlan", "ImageBuild"]),
        .testTarget(name: "ReproTests", dependencies: ["Repro", "TestSupport"]),
        // A build's outputs through a registry: push and pull.
        .target(name: "Publish", dependencies: ["Host", "OCI", "Registry", "Layers", "ImageBuild"]),
        // The size gate and the report tables over every kind of result.
        .target(
            name: "Gate",
            dependencies: [
                "Host", "QcowIO", "OCI", "ImageBuild", "Measure", "RuntimeSuite", "Repro",
                .product(name: "Yams", package: "Yams"),
            ]),
        .testTarget(name: "GateTests", dependencies: ["Gate", "TestSupport"]),

        // The command line: argument parsing and rendering, over the libraries.
        .target(
            name: "IMGBenchCLI",
            dependencies: [
                "Host", "QcowIO", "OCI", "Layers", "RecipePlan", "ImageBuild", "Measure", "RuntimeSuite",
                "Repro", "Gate", "Registry", "Publish",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "imgbench", dependencies: ["IMGBenchCLI"]),
        .testTarget(name: "EndToEndTests", dependencies: ["IMGBenchCLI", "QcowIO", "OCI", "TestSupport"]),

        // What the test targets share: temporary folders, running tools, seeded data.
        .target(name: "TestSupport", dependencies: ["Host"], path: "Tests/TestSupport"),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets (Fuzz/), only when bench/fuzz asks for them: a normal build and the tests
// never compile them, and they only link with `-sanitize=fuzzer` (libFuzzer's runtime).
if Context.environment["IMGBENCH_FUZZ"] != nil {
    package.targets.append(.target(name: "FuzzDriver", path: "Fuzz/Driver"))
    for (name, dependencies) in [("RecipeParser", ["RecipePlan"]), ("Budget", ["Gate"]), ("Report", ["Gate", "ImageBuild"])] {
        package.targets.append(.executableTarget(
            name: "Fuzz\(name)", dependencies: ["FuzzDriver"] + dependencies.map { .target(name: $0) }, path: "Fuzz/\(name)",
            exclude: ["seeds"]))
        package.products.append(.executable(name: "fuzz-\(name.lowercased())", targets: ["Fuzz\(name)"]))
    }
}
