import Foundation
import Layers

extension BuildReport {
    /// Fills in the container side's wasted bytes from the image `tag` of the layout at `path`:
    /// per layer (`WastedBytes.perLayer`), the base's layers summed into the base phase, then one
    /// layer per step that has a container measure, in order; and the image's sum in the totals.
    mutating func addLayerWaste(layout path: String, tag: String) throws {
        let layout = try ImageLayout(opening: path)
        let perLayer = try WastedBytes.perLayer(of: try layout.image(tag: tag), in: layout).map { UInt64(max(0, $0)) }
        let stepIndices = steps.indices.filter { steps[$0].container != nil }
        let baseLayers = perLayer.count - stepIndices.count
        guard baseLayers >= 0 else {
            throw BuildError.invalid("\(path): the image has \(perLayer.count) layers for \(stepIndices.count) steps that changed files")
        }
        base.container?.wasted = Waste(overwrittenLaterBytes: perLayer.prefix(baseLayers).reduce(0, +))
        for (i, w) in zip(stepIndices, perLayer.dropFirst(baseLayers)) {
            steps[i].container?.wasted = Waste(overwrittenLaterBytes: w)
        }
        totals.wasted = Waste(overwrittenLaterBytes: perLayer.reduce(0, +))
    }
}
