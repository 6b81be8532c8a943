import Foundation
import Host

/// What `check` says when the two files it compares were not made alike: figures from another
/// host, another imgbench or other tools differ for reasons of their own.
public enum ProvenanceWarnings {
    public static func compare(_ report: Provenance?, _ baseline: Provenance?, reportPath: String, baselinePath: String) -> [String] {
        switch (report, baseline) {
        case (nil, nil):
            return ["neither \(reportPath) nor \(baselinePath) records where it was made (written before imgbench recorded provenance); the gate cannot tell whether they are comparable"]
        case (nil, _), (_, nil):
            let missing = report == nil ? reportPath : baselinePath
            return ["\(missing) does not record where it was made (written before imgbench recorded provenance); the gate cannot tell whether the two are comparable"]
        case let (r?, b?):
            let d = r.differences(from: b)
            return d.isEmpty ? [] : ["\(reportPath) and \(baselinePath) were made on different hosts or versions (\(d.joined(separator: "; "))): a difference may come from that, not from the change"]
        }
    }
}
