import Synchronization

/// What `/healthz` watches beside polling: calls in progress (a handler's batch, a task's
/// step). One that has run past its bound is a hung downstream or a deadlock, and the
/// liveness probe should restart the pod, as karafka's liveness listener does for a stuck
/// consumer. Long work that makes progress in steps marks each step, not the whole.
public final class Liveness: Sendable {
    private let calls = Mutex<[UInt64: (what: String, since: ContinuousClock.Instant)]>([:])
    private let nextID = Atomic<UInt64>(0)

    public init() {}

    /// Runs `body`, marked busy with `what` while it runs.
    public func busy<T>(_ what: String, _ body: () async throws -> T) async rethrows -> T {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        calls.withLock { $0[id] = (what, .now) }
        defer { _ = calls.withLock { $0.removeValue(forKey: id) } }
        return try await body()
    }

    /// The call in progress the longest, and for how long.
    public var longest: (what: String, running: Duration)? {
        let now = ContinuousClock.now
        return calls.withLock { calls in
            calls.values.min { $0.since < $1.since }.map { ($0.what, now - $0.since) }
        }
    }
}
