import Foundation
import Host
@testable import Gate
@testable import ImageBuild
import Layers
@testable import Measure
import OCI
import RecipePlan
@testable import RuntimeSuite
import Testing
import TestSupport

// The size gate's pairing of steps and its limits, on reports made here, and the budget parser.

/// A step of a synthetic report: `bytes` on both sides when it changes files.
private func step(_ index: Int, _ text: String, bytes: UInt64? = nil, vm: UInt64? = nil, wasted: UInt64? = nil) -> BuildReport.StepReport {
    var s = BuildReport.StepReport(index: index, instruction: text, location: "t/Containerfile:\(index + 1):1", target: "both",
                                   key: "k\(index)-\(text.hashValue)", changesFiles: bytes != nil, container: nil, vm: nil)
    if let bytes {
        var c = BuildReport.Measure(seconds: 1, cacheHit: false)
        c.layerCompressedBytes = bytes / 2
        c.layerUncompressedBytes = bytes
        if let wasted { c.wasted = .init(overwrittenLaterBytes: wasted) }
        s.container = c
        var v = BuildReport.Measure(seconds: 1, cacheHit: false)
        v.qcow2AllocatedBytes = vm ?? bytes
        s.vm = v
    }
    return s
}

private func report(_ steps: [BuildReport.StepReport], recipe: String = "t") -> BuildReport {
    var base = BuildReport.Measure(seconds: 1, cacheHit: true)
    base.layerCompressedBytes = 50 << 20
    base.layerUncompressedBytes = 100 << 20
    base.qcow2AllocatedBytes = 100 << 20
    var totals = BuildReport.Totals(seconds: 1, cacheHits: 0, cacheMisses: 0)
    let files = steps.compactMap(\.container)
    totals.imageCompressedBytes = (50 << 20) + files.compactMap(\.layerCompressedBytes).reduce(0, +)
    totals.imageUncompressedBytes = (100 << 20) + files.compactMap(\.layerUncompressedBytes).reduce(0, +)
    totals.vmFlattenedAllocatedBytes = (100 << 20) + steps.compactMap { $0.vm?.qcow2AllocatedBytes }.reduce(0, +)
    totals.wasted = .init(overwrittenLaterBytes: files.compactMap { $0.wasted?.overwrittenLaterBytes }.reduce(0, +))
    return BuildReport(recipe: recipe, recipeFile: "\(recipe)/Containerfile", targets: ["container", "vm"], startedAt: "2026-01-01T00:00:00Z",
                       base: .init(description: "debian:bookworm minbase (mmdebstrap)", key: "b", container: base, vm: base),
                       steps: steps, finalisation: nil, totals: totals, outputs: .init(folder: "out/\(recipe)"))
}

private let baselineSteps = [
    step(1, "ENV A=1"), step(2, "LABEL x=1"), step(3, "RUN apt-get install -y curl", bytes: 10 << 20),
    step(4, "COPY app /app", bytes: 1 << 20), step(5, "RUN make", bytes: 4 << 20), step(6, "CMD [\"/app/run\"]"),
]

@Test func identicalReportsPassWithEveryStepPaired() {
    let r = SizeGate.compare(report: report(baselineSteps), baseline: report(baselineSteps), budget: Budget())
    #expect(r.withinBudget)
    #expect(r.steps.allSatisfy { $0.status == .same }, "\(r.steps)")
    // 3 file steps + the base, 3 figures each (no wasted figure on these steps), and the image's 4.
    #expect(r.checks.filter { $0.step != nil }.count == 4 * 3)
    // (The update figures only where a budget sets their limit.)
    #expect(r.checks.filter { $0.step == nil }.map(\.figure) == [.compressed, .uncompressed, .vmAllocated, .wasted])
}

@Test func aStepGrowingBy50MBFailsAndIsNamed() throws {
    var grown = baselineSteps
    grown[4] = step(5, "RUN make", bytes: (4 << 20) + (50 << 20))
    let r = SizeGate.compare(report: report(grown), baseline: report(baselineSteps), budget: Budget())
    #expect(!r.withinBudget)
    let make = r.breaches.filter { $0.step?.index == 5 }
    #expect(Set(make.map(\.figure)) == [.compressed, .uncompressed, .vmAllocated])
    let c = try #require(make.first { $0.figure == .uncompressed })
    #expect(c.growth == 50 << 20 && c.baseline == 4 << 20)
    #expect(c.message.contains("t: step 5 `RUN make`: uncompressed grew by +50.0 MiB"), "\(c.message)")
    #expect(c.message.contains("limit 1.0 MiB or 1%"), "\(c.message)")
    // The image's totals are over as well; no other step is.
    #expect(r.breaches.allSatisfy { $0.step == nil || $0.step?.index == 5 })
    #expect(r.breaches.contains { $0.step == nil && $0.figure == .compressed })
}

@Test func anInsertedStepIsNewAndTheOnesAfterItStillPair() throws {
    var steps = Array(baselineSteps.prefix(3))
    steps.append(step(4, "RUN dd if=/dev/urandom of=/big bs=1M count=50", bytes: 50 << 20))
    steps += baselineSteps.dropFirst(3).map { var s = $0; s.index += 1; return s }
    let r = SizeGate.compare(report: report(steps), baseline: report(baselineSteps), budget: Budget())
    let new = try #require(r.steps.first { $0.status == .new })
    #expect(new.index == 4 && new.instruction.hasPrefix("RUN dd"))
    #expect(r.steps.filter { $0.status != .same }.count == 1, "\(r.steps)")
    // COPY and RUN make moved by one and pair with themselves.
    #expect(r.steps.contains { $0.index == 6 && $0.baselineIndex == 5 && $0.status == .same })
    let breach = try #require(r.breaches.first { $0.step?.status == .new })
    #expect(breach.baseline == nil && breach.figure == .compressed && breach.current == 25 << 20)
    #expect(breach.message.contains("step 4 `RUN dd if=/dev/urandom of=/big bs=1M count=50` (new)"), "\(breach.message)")
    #expect(r.breaches.filter { $0.step != nil }.allSatisfy { $0.step?.index == 4 })
}

@Test func aRemovedStepIsRemovedAndShrinkingPasses() throws {
    var steps = baselineSteps
    steps.remove(at: 3)
    let r = SizeGate.compare(report: report(steps), baseline: report(baselineSteps), budget: Budget())
    #expect(r.withinBudget)
    let removed = try #require(r.steps.first { $0.status == .removed })
    #expect(removed.baselineIndex == 4 && removed.index == nil && removed.instruction == "COPY app /app")
    #expect(r.checks.filter { $0.step?.status == .removed }.allSatisfy { $0.growth < 0 && !$0.overBudget })
}

@Test func reorderedMetadataPasses() {
    // LABEL and ENV swapped, CMD moved before RUN make: no bytes change, no step is new.
    let steps = [step(1, "LABEL x=1"), step(2, "ENV A=1"), step(3, "RUN apt-get install -y curl", bytes: 10 << 20),
                 step(4, "COPY app /app", bytes: 1 << 20), step(5, "CMD [\"/app/run\"]"), step(6, "RUN make", bytes: 4 << 20)]
    let r = SizeGate.compare(report: report(steps), baseline: report(baselineSteps), budget: Budget())
    #expect(r.withinBudget)
    #expect(r.steps.allSatisfy { $0.status == .same }, "\(r.steps.filter { $0.status != .same })")
}

@Test func anEditedStepPairsAsChanged() throws {
    var steps = baselineSteps
    steps[2] = step(3, "RUN apt-get install -y curl jq", bytes: 10 << 20 + 300 << 10)
    let r = SizeGate.compare(report: report(steps), baseline: report(baselineSteps), budget: Budget())
    let changed = try #require(r.steps.first { $0.status == .changed })
    #expect(changed.index == 3 && changed.baselineInstruction == "RUN apt-get install -y curl")
    #expect(r.withinBudget, "300 KiB is within the built-in 1 MiB: \(r.breaches.map(\.message))")
}

@Test func wastedBytesAreComparedWhenBothReportsHaveThem() throws {
    var old = baselineSteps, now = baselineSteps
    old[3] = step(4, "COPY app /app", bytes: 1 << 20, wasted: 0)
    now[3] = step(4, "COPY app /app", bytes: 1 << 20, wasted: 3 << 20)
    let r = SizeGate.compare(report: report(now), baseline: report(old), budget: Budget())
    let w = try #require(r.breaches.first { $0.figure == .wasted && $0.step != nil })
    #expect(w.step?.index == 4 && w.growth == 3 << 20)
    // An older baseline without the figure: nothing to compare for that step.
    let r2 = SizeGate.compare(report: report(now), baseline: report(baselineSteps), budget: Budget())
    #expect(!r2.checks.contains { $0.figure == .wasted && $0.step?.index == 4 })
}

// MARK: - Limits

@Test func theLargerOfTheLimitsIsAllowed() {
    let l = SizeLimit(bytes: 10 << 20, percent: 5)
    #expect(l.allowedGrowth(from: 100 << 20) == Double(10 << 20))
    #expect(l.allowedGrowth(from: 1000 << 20) == Double(50 << 20))
    #expect(SizeLimit(bytes: 0).allowedGrowth(from: 5) == 0)
    #expect(SizeLimit(percent: 10).allowedGrowth(from: 0) == 0)
}

private let budgetText = """
    # the size budget
    default:
      bytes: 2MiB
      percent: 1%
      wasted: {bytes: 0}
    recipes:
      t:
        bytes: 5MiB
        image:
          compressed: {percent: 2%}
        steps:
          "RUN apt-get install":
            bytes: 60MiB
          "RUN apt-get install -y curl":
            percent: 50%
          "5":
            vm-allocated: {bytes: 64MiB}
    """

@Test func budgetResolvesFromDefaultsToStepsAndFigures() throws {
    let b = try Budget.parse(budgetText, file: "budget.yaml")
    // Another recipe: the defaults.
    #expect(b.limit(recipe: "other", step: (3, "RUN x"), figure: .compressed) == SizeLimit(bytes: 2 << 20, percent: 1))
    #expect(b.limit(recipe: "other", step: nil, figure: .wasted) == SizeLimit(bytes: 0, percent: 1))
    // The recipe, then the image.
    #expect(b.limit(recipe: "t", step: nil, figure: .uncompressed) == SizeLimit(bytes: 5 << 20, percent: 1))
    #expect(b.limit(recipe: "t", step: nil, figure: .compressed) == SizeLimit(bytes: 5 << 20, percent: 2))
    // A step by the longest prefix of its instruction, and by its index.
    #expect(b.limit(recipe: "t", step: (3, "RUN apt-get install -y curl"), figure: .compressed) == SizeLimit(bytes: 5 << 20, percent: 50))
    #expect(b.limit(recipe: "t", step: (3, "RUN apt-get install -y vim"), figure: .compressed) == SizeLimit(bytes: 60 << 20, percent: 1))
    #expect(b.limit(recipe: "t", step: (5, "RUN make"), figure: .vmAllocated) == SizeLimit(bytes: 64 << 20, percent: 1))
    #expect(b.limit(recipe: "t", step: (5, "RUN make"), figure: .compressed) == SizeLimit(bytes: 5 << 20, percent: 1))
    // Without a budget: 1 MiB or 1 %.
    #expect(Budget().limit(recipe: "t", step: nil, figure: .compressed) == Budget.builtIn)
}

@Test(arguments: [
    ("default:\n  bytes: 10XB\n", "budget.yaml:2:10", "not a size"),
    ("default:\n  percent: lots\n", "budget.yaml:2:12", "not a percentage"),
    ("default:\n  size: 1M\n", "budget.yaml:2:9", "unknown key 'size'"),
    ("recipes:\n  t:\n    steps:\n      RUN x:\n        compresed: {bytes: 1M}\n", "budget.yaml:5:20", "unknown key 'compresed'"),
    ("limits: 1\n", "budget.yaml:1:9", "unknown key 'limits'"),
    ("default: [1, 2\n", "budget.yaml:2:1", "not YAML"),
])
func budgetErrorsNameFileLineAndColumn(text: String, place: String, says: String) {
    do {
        _ = try Budget.parse(text, file: "budget.yaml")
        Issue.record("accepted: \(text)")
    } catch {
        let s = "\(error)"
        #expect(s.hasPrefix(place), "\(s)")
        #expect(s.contains(says), "\(s)")
    }
}

@Test func anUnreadableReportNamesTheFileAndThePlace() throws {
    let dir = NSTemporaryDirectory() + "imgbench-gate-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report(baselineSteps))) as? [String: Any])
    var steps = try #require(json["steps"] as? [[String: Any]])
    var c = try #require(steps[2]["container"] as? [String: Any])
    c["layerCompressedBytes"] = "many"
    steps[2]["container"] = c
    json["steps"] = steps
    let path = dir + "/report.json"
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
    #expect(throws: DocumentError.invalid(place: "\(path): at steps[2].container.layerCompressedBytes", message: "expected a UInt64")) {
        try BuildReport.load(path)
    }
    #expect(throws: DocumentError.self) { try BuildReport.load(dir + "/missing.json") }
    try Data("{\"schemaVersion\": 1".utf8).write(to: URL(fileURLWithPath: path))
    #expect { try BuildReport.load(path) } throws: { "\($0)".hasPrefix("\(path): at the top: not JSON") }
}

// MARK: - Wasted bytes of a report

@Test func layerListingsKeptInTheCacheGiveTheSameWastedBytes() throws {
    let dir = NSTemporaryDirectory() + "imgbench-listing-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let fm = FileManager.default
    // Layer 1: two files; layer 2 overwrites one and deletes the other.
    try fm.createDirectory(atPath: "\(dir)/tree", withIntermediateDirectories: true)
    try Data(count: 3000).write(to: URL(fileURLWithPath: "\(dir)/tree/a"))
    try Data(count: 500).write(to: URL(fileURLWithPath: "\(dir)/tree/b"))
    let store = BlobStore(root: "\(dir)/store")
    try fm.createDirectory(atPath: store.directory, withIntermediateDirectories: true)
    let first = try LayerCapture.capture(.tree("\(dir)/tree"), into: store).layer
    let second = try LayerCapture.write([LayerEntry(path: "a", kind: .regular, size: 0), LayerEntry(path: "b", kind: .whiteout)],
                                        into: store, options: CaptureOptions())
    let cache = "\(dir)/listings"
    func wasted() throws -> [Int64] {
        try WastedBytes.perLayer([first, second].map {
            try LayerListingCache.entries(of: store.path(of: $0.descriptor.digest), digest: $0.descriptor.digest, cache: cache)
        }).map(\.wastedBytes)
    }
    let read = try wasted()
    #expect(read == [3500, 0])
    #expect(fm.fileExists(atPath: "\(cache)/\(first.descriptor.digest.hex).json"))
    // From the cache, the blobs gone.
    try fm.removeItem(atPath: store.directory)
    #expect(try wasted() == read)
}

// MARK: - Issue 13: large reports, and numbers a report cannot hold

@Test func twentyThousandStepsPairWithOneRemovedOneNewAndOneChanged() throws {
    // The table of a longest common subsequence took 3.2 GB here; the pairing is now n log n.
    let texts = (1...20_000).map { "RUN step \($0)" }
    let baseline = texts.enumerated().map { step($0.offset + 1, $0.element, bytes: 1 << 10) }
    var now = texts
    now[14_999] = "RUN changed"
    now.insert("RUN new", at: 10_000)
    now.remove(at: 4_999)
    let r = SizeGate.compare(report: report(now.enumerated().map { step($0.offset + 1, $0.element, bytes: 1 << 10) }),
                             baseline: report(baseline), budget: Budget())
    #expect(r.steps.count == 1 + 20_000 + 1)
    let odd = r.steps.filter { $0.status != .same }
    #expect(odd.map(\.status) == [.removed, .new, .changed], "\(odd)")
    #expect(odd[0].baselineIndex == 5_000 && odd[0].instruction == "RUN step 5000")
    #expect(odd[1].index == 10_000 && odd[1].instruction == "RUN new")
    #expect(odd[2].index == 15_000 && odd[2].baselineIndex == 15_000 && odd[2].baselineInstruction == "RUN step 15000")
    // Every other step pairs with itself, in order, the removed one where it stood.
    let same = r.steps.dropFirst().filter { $0.status == .same }
    #expect(same.allSatisfy { $0.instruction == "RUN step \($0.baselineIndex!)" })
    #expect(r.steps.firstIndex { $0.status == .removed } == 5_000)
    #expect(r.withinBudget)
}

@Test func twentyThousandMetadataStepsPairByTextInAnyOrder() {
    let texts = (1...20_000).map { "ENV V\($0)=\($0 % 7)" } + Array(repeating: "LABEL same=1", count: 3)
    let baseline = texts.enumerated().map { step($0.offset + 1, $0.element) }
    let reversed = texts.reversed().enumerated().map { step($0.offset + 1, $0.element) }
    let r = SizeGate.compare(report: report(reversed), baseline: report(baseline), budget: Budget())
    #expect(r.steps.count == 1 + texts.count)
    #expect(r.steps.allSatisfy { $0.status == .same })
    #expect(Set(r.steps.compactMap(\.baselineIndex)).count == 1 + texts.count)
}

@Test(arguments: [
    (-1.0, "is negative"), (1.5, "is not a whole number"), (18446744073709551616.0, "past 2^64"), (1e30, "past 2^64"),
])
func aReportNumberThatDoesNotFitIsNamedWithItsPath(value: Double, says: String) throws {
    let dir = try TempDir("gate-numbers")
    var json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report(baselineSteps))) as? [String: Any])
    var steps = try #require(json["steps"] as? [[String: Any]])
    var c = try #require(steps[2]["container"] as? [String: Any])
    c["layerCompressedBytes"] = value
    steps[2]["container"] = c
    json["steps"] = steps
    let path = dir.file("report.json")
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
    #expect { try BuildReport.load(path) } throws: { e in
        let s = "\(e)"
        return s.hasPrefix("\(path): at steps[2].container.layerCompressedBytes: ") && s.contains(says)
    }
    var book = ReportBook()
    #expect { try book.add(file: path) } throws: { "\($0)".contains("at steps[2].container.layerCompressedBytes: ") }
}

@Test func extremeFiguresAndIndicesRenderAndPairWithoutTrapping() throws {
    // A report's numbers are whatever its file says: UInt64.max bytes became 2^64 as a Double and
    // trapped when made a UInt64 again for the table; a step index of Int.max overflowed where the
    // finalisation's index is counted after it.
    var last = step(1, "RUN x", bytes: 1)
    last.index = .max
    var r = report([last])
    r.totals.imageCompressedBytes = .max
    r.finalisation = .init(description: "finalise", key: "f", container: nil, vm: nil)
    let dir = try TempDir("gate-extreme")
    try CanonicalJSON.pretty(r).write(to: URL(fileURLWithPath: dir.file("report.json")))
    var book = ReportBook()
    try book.add(file: dir.file("report.json"))
    #expect(book.markdown().contains("16777216.0 TiB"), "\(book.markdown())")
    let g = SizeGate.compare(report: r, baseline: r, budget: Budget())
    #expect(g.steps.last?.index == Int.max && g.steps.last?.instruction == "finalisation: finalise")
    #expect(ReportBook.Table.significant(.infinity) == "inf")
}

// MARK: - Issue 18: a budget key that names no step

@Test func aStepKeyThatMatchesNoStepIsAnErrorNamingTheKeyAndItsPlace() throws {
    // The README's old example: "RUN apt-get install" is not how `RUN apt-get update && apt-get install ...` begins.
    let steps = [step(1, "RUN apt-get update && apt-get install -y mariadb-server", bytes: 10 << 20), step(2, "USER mysql")]
    let r = SizeGate.compare(report: report(steps), baseline: report(steps), budget: Budget())
    let wrong = try Budget.parse("recipes:\n  t:\n    steps:\n      \"RUN apt-get install\":\n        bytes: 50MiB\n", file: "budget.yaml")
    #expect { try wrong.checkStepKeys(recipe: "t", steps: r.steps) } throws: { e in
        let s = "\(e)"
        return s.hasPrefix("budget.yaml:4:7: the step key \"RUN apt-get install\"") && s.contains("matches no step")
    }
    let index = try Budget.parse("recipes:\n  t:\n    steps:\n      \"9\": {bytes: 1M}\n", file: "budget.yaml")
    #expect { try index.checkStepKeys(recipe: "t", steps: r.steps) } throws: { "\($0)".contains("\"9\" (a step index") }
    // Keys that name steps (by prefix, index, the base, the finalisation), and another recipe's keys, pass.
    let right = try Budget.parse("""
        recipes:
          t:
            steps:
              "RUN apt-get update": {bytes: 50MiB}
              "USER": {bytes: 0}
              "0": {bytes: 1M}
              "2": {bytes: 1M}
              "base:": {bytes: 1M}
          other:
            steps:
              "RUN nothing": {bytes: 1M}
        """, file: "budget.yaml")
    try right.checkStepKeys(recipe: "t", steps: r.steps)
    #expect(right.limit(recipe: "t", step: (1, steps[0].instruction), figure: .compressed).bytes == 50 << 20)
}

@Test func aReportFromAnotherHostIsWarnedAboutAndTheWarningIsInTheResult() throws {
    var base = report(baselineSteps), now = report(baselineSteps)
    base.provenance = .current()
    var p = Provenance.current()
    p.hostname = "elsewhere"
    p.qemu = "QEMU emulator version 9.0.0"
    now.provenance = p
    let r = SizeGate.compare(report: now, baseline: base, budget: Budget(), reportPath: "r.json", baselinePath: "b.json")
    #expect(r.withinBudget && r.warnings.count == 1, "\(r.warnings)")
    #expect(r.warnings[0].contains("host: elsewhere vs") && r.warnings[0].contains("QEMU: QEMU emulator version 9.0.0 vs"), "\(r.warnings)")
    let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(r)) as? [String: Any])
    #expect((json["warnings"] as? [String]) == r.warnings)
}

@Test func theUpdateDeltaIsCheckedWhereTheBudgetSetsItsLimit() throws {
    var now = report(baselineSteps)
    now.update = UpdateDelta(baseline: "out/old", containerNewLayers: 2, containerBytes: 5 << 20, containerFullBytes: 60 << 20,
                             vmBytes: nil, vmClusters: nil, vmFullBytes: nil)
    // Without a limit of its own, a download is no growth to judge.
    #expect(!SizeGate.compare(report: now, baseline: report(baselineSteps), budget: Budget()).checks.contains { $0.figure == .updateContainer })
    let budget = try Budget.parse("recipes:\n  t:\n    image:\n      update-container: {bytes: 1MiB}\n      update-vm: {bytes: 1MiB}\n", file: "b.yaml")
    let r = SizeGate.compare(report: now, baseline: report(baselineSteps), budget: budget)
    let update = try #require(r.checks.first { $0.figure == .updateContainer })
    #expect(update.overBudget && update.current == 5 << 20 && update.baseline == nil && !r.withinBudget)
    #expect(update.message.contains("image: update-container grew by +5.0 MiB (none -> 5.0 MiB); limit 1.0 MiB"), "\(update.message)")
    #expect(!r.checks.contains { $0.figure == .updateVM }, "no disk compared, no VM figure")
    now.update?.containerBytes = 512 << 10
    #expect(SizeGate.compare(report: now, baseline: report(baselineSteps), budget: budget).withinBudget)
}
