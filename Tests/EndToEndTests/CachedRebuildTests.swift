import Foundation
import Testing
import TestSupport

// A fully cached rebuild, as a new user tries it (issue 18): the same image as the build that made
// the cache entries, and a report that keeps what each step cost when it was built.
extension BuildTests {
    @Test func anAllCachedRebuildGivesTheSameImageAndWhatEachStepCostWhenBuilt() throws {
        let dir = try TempDir("build-rebuilt", in: Self.scratch)
        // Recipes/tiny with its shared RUN step's text new each run: the first build makes that
        // step and every one after it on both sides (the base and the steps before are cached
        // by earlier builds, maybe by an imgbench that kept no cost).
        let recipe = try tinyWithANewRunStep(dir, "rebuilt")

        let first = try build(recipe, output: dir.file("first"))
        try #require(first.status == 0, "\(first.stderr.suffix(3000))")
        // Into another output folder (nothing of the first kept), with the same cache; a second
        // later at least, so that a time taken now would show in the image's history.
        sleep(1)
        let again = try build(recipe, output: dir.file("again"))
        try #require(again.status == 0, "\(again.stderr.suffix(3000))")
        let made = try readReport(dir.file("first")), cached = try readReport(dir.file("again"))

        #expect(cached.outputs.imageDigest != nil && cached.outputs.imageDigest == made.outputs.imageDigest,
                "an all-cached rebuild is another image: \(String(describing: made.outputs.imageDigest)) then \(String(describing: cached.outputs.imageDigest))")
        let misses = cached.measures.filter { !$0.measure.cacheHit }.map(\.name)
        #expect(misses.isEmpty && cached.totals.cacheMisses == 0, "the rebuild made \(misses)")
        let madeNow = made.measures.filter { !$0.measure.cacheHit }.map(\.name)
        #expect(madeNow.count >= 5, "the changed step and those after it, on both sides, and the finalisation: \(madeNow)")

        // Each step's cost when built is what the build that made it measured.
        try #require(made.measures.map(\.name) == cached.measures.map(\.name))
        for ((name, m), (_, c)) in zip(made.measures, cached.measures) {
            if !m.cacheHit {
                #expect(m.builtSeconds == m.seconds, "\(name): made now, its cost is this run's time")
                #expect(c.builtSeconds == m.seconds, "\(name): the rebuild says it cost \(String(describing: c.builtSeconds)) s, the build that made it took \(m.seconds) s")
            } else {
                #expect(c.builtSeconds == m.builtSeconds, "\(name): both builds read its cost from one cache entry")
            }
        }

        // The tables: the build's own shows the cost beside the lookup, report the totals of both.
        #expect(again.stdout.contains(" (built "), "\(again.stdout.suffix(2000))")
        if let c = cached.totals.containerBuiltSeconds, let v = cached.totals.vmBuiltSeconds {
            #expect(c > 0 && v > 0)
            #expect(again.stdout.contains("when built: container " + String(format: "%.1f s", c) + ", vm " + String(format: "%.1f s", v)),
                    "\(again.stdout.suffix(600))")
            let rendered = try imgbench("report", dir.file("again/report.json"))
            #expect(rendered.status == 0, "\(rendered.stderr)")
            // The VM's time in its two parts (base and steps, the finalisation), then both costs when built.
            #expect(rendered.stdout.contains("| container | VM: base and steps | VM: finalisation | container when built | VM when built |")
                && rendered.stdout.contains(String(format: "| %.1f s | %.1f s |", c, v)), "\(rendered.stdout)")
        } else {
            // Only when a step before the changed one was cached by an imgbench that kept no cost.
            #expect(cached.measures.contains { $0.measure.builtSeconds == nil },
                    "every measure has its cost, the totals do not: \(cached.measures.map { ($0.name, $0.measure.builtSeconds) })")
            #expect(!again.stdout.contains("when built:"), "\(again.stdout.suffix(600))")
        }
    }
}
