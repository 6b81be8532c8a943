import Foundation

/// The machine the work runs on.
public enum Processors {
    /// Processors online (at least 1): the worker count for parallel compression and conversion.
    public static var count: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
