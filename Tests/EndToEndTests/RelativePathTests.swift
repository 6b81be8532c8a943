import Foundation
import Testing
import TestSupport

/// Every path a command takes works relative to the working folder as well as absolute: the
/// commands run from a folder of their own and reach the recipe, the cache and the outputs
/// through `..`. A relative --cache once left every VM step's FUSE export mounted (the daemon
/// changes to /), and `imgbench run` of a relative manifest gave runc and the native workload
/// relative folders that named nothing where they ran.
///
/// Part of BuildTests, so that the build takes its turn over the shared cache.
extension BuildTests {
    @Test func commandsTakeRelativePathsFromAnotherWorkingFolder() throws {
        let dir = try TempDir("build-relative", in: Self.scratch)
        let work = try dir.sub("work")
        let mark = "relative-\(UUID().uuidString.prefix(8))"
        // A last step that is new each time, so that its VM side mounts a disk and releases it.
        try writeRecipe(dir, "relative", Self.sysbenchRecipe + "RUN echo \(mark) > /relative.txt\n")
        let cache = relativePath(Self.cache, from: work)
        let built = try build("../relative", output: "../out", progress: "none", cache: cache, in: work)
        try #require(built.status == 0, "imgbench build ../relative --cache \(cache): \(built.stderr.suffix(3000))")
        let out = dir.file("out")
        let report = try readReport(out)
        #expect(report.steps.last?.vm?.cacheHit == false, "the last VM step did not run: \(report.steps)")
        expectNothingLeft(under: [Self.cache, dir.path], marker: mark)

        // The commands that read the outputs; the chain's tip names its backing file relative
        // to its own folder, as qcow2 stores it.
        let tip = try #require(report.outputs.vmChain?.last, "no VM chain in the report")
        for args in [["check", "../out/report.json", "--baseline", "../out/report.json", "--junit", "gate.xml"],
                     ["qcow", "info", "../out/vm/disk.qcow2"], ["qcow", "check", "../out/vm/disk.qcow2"],
                     ["qcow", "map", "../out/\(tip)"], ["oci", "inspect", "../out/oci:relative"]] {
            let r = try runProcess(try IMGBenchBinary.path(), args, cwd: work)
            #expect(r.status == 0, "imgbench \(args.joined(separator: " ")): exit \(r.status): \(r.stderr)")
        }
        #expect(FileManager.default.fileExists(atPath: "\(work)/gate.xml"), "--junit gate.xml is not in the working folder")

        // imgbench run as the README writes it, on the sides that took the manifest's folder.
        let run = try imgbenchRun(["../out/handoff.json", "--workload", "declared", "--on", "native,container", "--duration", "1",
                                   "--output", "run.json", "--progress", "none"], in: work)
        #expect(run.status == 0, "imgbench run ../out/handoff.json: exit \(run.status): \(run.stderr.suffix(3000))")
        #expect(FileManager.default.fileExists(atPath: "\(work)/run.json"), "--output run.json is not in the working folder")
        try expectNoRunLeft(out)
    }
}
