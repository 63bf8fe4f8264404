internal import CLinux

/// Process-wide settings made once at start-up.
public enum ProcessTuning {
    /// Two malloc arenas, not eight per core: the worker and hashing threads otherwise each keep an arena
    /// of freed blocks, and the resident size creeps up with every new thread.
    public static func limitMallocArenas() {
        _ = mallopt(CLINUX_M_ARENA_MAX, 2)
    }
}
