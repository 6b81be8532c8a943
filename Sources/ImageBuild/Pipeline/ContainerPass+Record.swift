import Foundation
import OCI

/// What `CACHE/containers/layers/KEY.json` holds: the stored layer, and when and at what cost it
/// was made, so that a rebuild from the cache gives the image the first build gave (its history's
/// `created` times) and reports what each step cost when it was built.
extension ContainerPass {
    struct LayerRecord: Codable, Equatable {
        var layer: StoredLayer
        /// The `created` time of the history entry of the step that made the layer (RFC 3339, as
        /// written in the image config); nil in records written before it was kept.
        var created: String?
        /// Seconds from the start of the phase or step that made the layer until it was
        /// recorded (the report's `builtSeconds`); nil in records written before it was kept.
        var builtSeconds: Double?

        init(layer: StoredLayer, created: String?, builtSeconds: Double?) {
            self.layer = layer
            self.created = created
            self.builtSeconds = builtSeconds
        }

        enum CodingKeys: String, CodingKey {
            case created, builtSeconds
        }

        /// The stored layer's fields at the top, as they were before the others were added: an
        /// old record reads as one without them, and a new one still reads as a `StoredLayer`.
        init(from decoder: Decoder) throws {
            layer = try StoredLayer(from: decoder)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            created = try c.decodeIfPresent(String.self, forKey: .created)
            builtSeconds = try c.decodeIfPresent(Double.self, forKey: .builtSeconds)
        }

        func encode(to encoder: Encoder) throws {
            try layer.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeIfPresent(created, forKey: .created)
            try c.encodeIfPresent(builtSeconds, forKey: .builtSeconds)
        }
    }
}
