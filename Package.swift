// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "imgbench",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "imgbench", targets: ["imgbench"]),
        .library(name: "QcowIO", targets: ["QcowIO"]),
        .library(name: "Layers", targets: ["Layers"]),
        .library(name: "ImageBuild", targets: ["ImageBuild"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // The size budget of `imgbench check` is YAML.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
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

        .target(name: "QcowIO", dependencies: ["CZlib"]),
        .testTarget(name: "QcowIOTests", dependencies: ["QcowIO"]),

        .target(
            name: "Layers",
            dependencies: [
                "CArchive", "CDeflate", "CZstd", "CLinux",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .testTarget(name: "LayersTests", dependencies: ["Layers"]),

        .target(
            name: "ImageBuild",
            dependencies: [
                "QcowIO", "Layers", "CGuestfs",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
            ]),
        .testTarget(name: "ImageBuildTests", dependencies: ["ImageBuild"], exclude: ["Fixtures"]),

        // The command line: argument parsing and rendering, over the libraries.
        .target(
            name: "IMGBenchCLI",
            dependencies: [
                "QcowIO", "Layers", "ImageBuild",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "imgbench", dependencies: ["IMGBenchCLI"]),
        .testTarget(name: "EndToEndTests", dependencies: ["IMGBenchCLI", "QcowIO"]),
    ],
    swiftLanguageModes: [.v6]
)
