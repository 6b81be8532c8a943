import Foundation
import Host
import Layers
import QcowIO
import RecipePlan

/// The outputs phase: the VM chain and flattened disk, the OCI layout and the runtime bundle,
/// `report.json` and the hand-off, written beside the old outputs and swapped in when complete.
/// What the previous build in this folder wrote and would be written the same is moved over
/// instead (`OutputStamps`).
extension Builder {
    func writeOutputs(of state: State, into partial: String, bundle stager: BundleStager?, started: Date,
                      restore: OutputRestore) throws -> BuildReport {
        let out = options.output
        let previous = OutputStamps.read(folder: out)
        var outputs = BuildReport.Outputs(folder: out)
        var totals = BuildReport.Totals(seconds: 0, cacheHits: 0, cacheMisses: 0)
        var bundleKey: String?
        if let vm = state.vm {
            try exportVM(vm, into: partial, previous: previous, outputs: &outputs, totals: &totals, restore: restore)
            if vm.settings.boot == .firmware {
                let ports = (state.config.image.exposedPorts ?? [:]).keys.sorted()
                outputs.exposedPorts = ports
                var domains: [String: String] = [:]
                for f in LibvirtDomain.Firmware.allCases {
                    let rel = "vm/libvirt-\(f.rawValue).xml"
                    let xml = LibvirtDomain.xml(name: recipe.name, disk: LexicalPath.absolute("\(out)/vm/disk.qcow2"), firmware: f, exposedPorts: ports)
                    try Data(xml.utf8).write(to: URL(fileURLWithPath: "\(partial)/\(rel)"))
                    domains[f.rawValue] = rel
                }
                outputs.libvirtDomains = domains
            }
            if !options.vmFormats.filter({ $0 != .qcow2 }).isEmpty {
                outputs.vmFormats = try VMFormats.write(options.vmFormats, folder: partial, name: recipe.name, tag: imageName, events: events)
            }
        }
        if let container = state.container, let stager {
            bundleKey = try exportContainer(container, state: state, into: partial, bundle: stager, previous: previous,
                                            outputs: &outputs, totals: &totals, restore: restore)
        }
        count(state, into: &totals)
        totals.seconds = Date().timeIntervalSince(started)
        var report = BuildReport(recipe: imageName, recipeFile: recipe.file,
                                 targets: StepTarget.allCases.filter { $0 != .both && options.targets.contains($0) }.map(\.rawValue),
                                 startedAt: ISO8601DateFormatter().string(from: started), base: state.base, steps: state.steps,
                                 finalisation: state.finalisation, totals: totals, outputs: outputs, provenance: .current())
        report.stageSteps = state.stageSteps
        if state.container != nil {
            try report.addLayerWaste(layout: "\(partial)/oci", tag: imageName, listings: LayerListingCache.folder(cache: options.cache))
        }
        // The whole build up to its report: the wasted bytes too, which read a layer's blob when
        // its listing was not kept while the bundle took it (a layer from the cache of an older
        // imgbench).
        report.totals.seconds = Date().timeIntervalSince(started)
        if let baseline = options.baseline { report.update = try UpdateDelta.from(baseline: baseline, to: report, in: partial) }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try enc.encode(report).write(to: URL(fileURLWithPath: "\(partial)/report.json"))
        try Handoff(report: report, workloads: recipe.workloads).write(into: partial)
        try swapIn(partial, restore: restore)
        stamp(out, bundleKey: bundleKey, vm: state.vm)
        return report
    }

    /// The chain, the flattened disk (the previous build's when it is the same) and the boot files.
    func exportVM(_ vm: VMPass, into partial: String, previous: OutputStamps?, outputs: inout BuildReport.Outputs,
                  totals: inout BuildReport.Totals, restore: OutputRestore) throws {
        let out = options.output
        let reuse = previous?.reusableDisk(in: out, chainTip: vm.chainTip, clusterSize: vm.settings.clusterSize)
        events.note(reuse == nil ? "vm: writing the chain and the flattened disk"
                                 : "vm: writing the chain; the flattened disk of the previous build is the same and unchanged, kept")
        if let reuse { restore.willMove(reuse, to: "\(partial)/\(OutputStamps.disk)") }
        let e = try vm.export(to: partial, reusing: reuse)
        outputs.vmChain = e.chain
        outputs.vmDisk = e.disk
        let fm = FileManager.default
        if fm.fileExists(atPath: "\(partial)/vm/boot/vmlinuz") {
            outputs.kernel = "vm/boot/vmlinuz"
            outputs.initrd = fm.fileExists(atPath: "\(partial)/vm/boot/initrd.img") ? "vm/boot/initrd.img" : nil
            // A firmware disk's root is its third partition; GRUB boots it by UUID, the direct
            // kernel boot (`imgbench run`, the hand-off) by this.
            outputs.kernelCommandLine = vm.settings.boot == .firmware ? "root=/dev/vda3 rw console=ttyS0" : "root=/dev/vda rw console=ttyS0"
        }
        outputs.vmBoot = vm.settings.boot.rawValue
        totals.vmFlattenedAllocatedBytes = e.flattened.chain[0].allocatedBytes
        totals.vmFlattenedDiskBytes = e.flattened.chain[0].diskBytes
        totals.vmVirtualSize = e.flattened.virtualSize
    }

    /// The OCI layout and the runtime bundle (the previous build's when it is the same and the
    /// stager has not started unpacking); returns the bundle's key for its stamp.
    func exportContainer(_ container: ContainerPass, state: State, into partial: String, bundle stager: BundleStager,
                         previous: OutputStamps?, outputs: inout BuildReport.Outputs, totals: inout BuildReport.Totals,
                         restore: OutputRestore) throws -> String {
        let config = state.config.image
        events.note("container: writing the OCI layout and the runtime bundle")
        outputs.ociLayout = "oci"
        outputs.imageDigest = try container.export(layout: "\(partial)/oci", tag: imageName, config: config)
        let bundleKey = try OutputStamps.bundleKey(layers: container.layers.map(\.descriptor.digest), config: config, hostname: recipe.name)
        if !stager.isStarted, let reuse = previous?.reusableBundle(in: options.output, key: bundleKey) {
            events.note("container: the runtime bundle of the previous build is the same and unchanged, kept")
            stager.abandon()
            restore.willMove(reuse, to: stager.bundle)
            try FileManager.default.moveItem(atPath: reuse, toPath: stager.bundle)
        } else {
            try stager.finish()
            try RuntimeBundle.writeConfig(at: stager.bundle, config: config, hostname: recipe.name)
        }
        outputs.bundle = "bundle"
        let cm = [state.base.container].compactMap { $0 } + state.steps.compactMap(\.container)
        totals.containerSeconds = cm.map(\.seconds).reduce(0, +)
        totals.containerBuiltSeconds = BuildReport.builtSeconds(cm)
        totals.imageCompressedBytes = container.layers.map(\.descriptor).totalSize
        totals.imageUncompressedBytes = cm.compactMap(\.layerUncompressedBytes).reduce(0, +)
        return bundleKey
    }

    /// Cache hits and misses over every measure, and the VM side's own time and chain size.
    func count(_ state: State, into totals: inout BuildReport.Totals) {
        let measures = [state.base.container, state.base.vm, state.finalisation?.vm].compactMap { $0 }
            + state.steps.flatMap { [$0.container, $0.vm].compactMap { $0 } }
        totals.cacheHits = measures.filter(\.cacheHit).count
        totals.cacheMisses = measures.count - totals.cacheHits
        totals.sides = sidesAtOnce(state) ? "concurrent" : "serial"
        if let p = packages {
            totals.packages = BuildReport.PackageTraffic(p.container.current.adding(p.vm.current))
            totals.packagesThrough = p.container.through?.description
        }
        if state.vm != nil {
            // The VM side's own measures only (the container side's are in containerSeconds).
            let vmm = [state.base.vm, state.finalisation?.vm].compactMap { $0 } + state.steps.compactMap(\.vm)
            totals.vmSeconds = vmm.map(\.seconds).reduce(0, +)
            totals.vmBuiltSeconds = BuildReport.builtSeconds(vmm)
            totals.vmChainAllocatedBytes = vmm.compactMap(\.qcow2AllocatedBytes).reduce(0, +)
        }
    }

    /// The partial folder becomes the output folder; the old one is removed once it is replaced,
    /// and nothing is left to restore on failure.
    func swapIn(_ partial: String, restore: OutputRestore) throws {
        let fm = FileManager.default
        let out = options.output, old = out + ".old"
        try? fm.removeItem(atPath: old)
        if fm.fileExists(atPath: out) { try fm.moveItem(atPath: out, toPath: old) }
        try fm.moveItem(atPath: partial, toPath: out)
        restore.forget()
        try? fm.removeItem(atPath: old)
    }

    /// Stamped in place: what a later build may keep if it is still untouched then.
    func stamp(_ out: String, bundleKey: String?, vm: VMPass?) {
        var stamps = OutputStamps()
        if let bundleKey {
            stamps.bundle = try? OutputStamps.Bundle(key: bundleKey, stamp: TreeStamp.take(OutputStamps.bundleEntries.map { "\(out)/\($0)" }))
        }
        if let vm, let tip = FileIdentity(path: vm.chainTip) {
            stamps.disk = try? OutputStamps.Disk(chainTip: tip, clusterSize: vm.settings.clusterSize,
                                                 stamp: TreeStamp.take(["\(out)/\(OutputStamps.disk)"]))
        }
        try? stamps.write(folder: out)
    }
}
