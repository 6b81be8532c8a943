import Foundation
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The machine the work runs on.
public enum Processors {
    /// Processors this process may run on (at least 1; an affinity mask such as taskset's counts):
    /// the worker count for parallel compression and conversion.
    public static var count: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Lowers the calling thread's scheduling priority to `nice` (Linux keeps a nice value per
    /// thread): work that runs beside the work that matters, such as a capture nobody waits for
    /// yet, then takes only the CPU time the rest leaves. Best effort: a refusal changes nothing.
    public static func lowerThisThread(to nice: Int32) {
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(imgbench_gettid()), nice)
    }
}
