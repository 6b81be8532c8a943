import Foundation

/// The machine the work runs on.
public enum Processors {
    /// Processors this process may run on (at least 1; an affinity mask such as taskset's counts):
    /// the worker count for parallel compression and conversion.
    public static var count: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }
}
