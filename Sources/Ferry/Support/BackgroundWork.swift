import Dispatch

/// Work run off the event threads that must end before the process does: an interrupted upload's
/// bytes being recorded, a temporary file being removed once its writes are over.
///
/// Thread-safety: every member may be called from any thread.
public enum BackgroundWork {
    private static let group = DispatchGroup()

    /// Runs `work` on a Dispatch thread.
    static func run(_ work: @escaping @Sendable () -> Void) {
        group.enter()
        DispatchQueue.global().async {
            work()
            group.leave()
        }
    }

    /// Runs `work` on a Dispatch thread once everything in `other` is done.
    static func run(after other: DispatchGroup, _ work: @escaping @Sendable () -> Void) {
        group.enter()
        other.notify(queue: .global()) {
            work()
            group.leave()
        }
    }

    /// Waits until all of it is done, or `seconds` have passed; false on the timeout.
    public static func wait(seconds: Double) -> Bool {
        group.wait(timeout: .now() + seconds) == .success
    }
}
