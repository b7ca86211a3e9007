import CoreMetrics
import NIOCore
import Synchronization

/// At most `limit` bodies at once, across however many tasks call `run`: the one limiter of
/// downstream calls in flight, database lanes and batch lanes. Waiters are served in
/// arrival order; a waiter cancelled before its turn leaves the queue and throws
/// `CancellationError`.
///
/// The runtime's HTTP pool waits here without a task: its queued call is sent by whichever
/// thread frees a slot (the event loop that just read an answer), so a slot is never held
/// while a resumed task waits for a thread.
public final class ConcurrencyLimit: Sendable {
    public let limit: Int
    private let state: Mutex<State>
    /// Where the slots' time taken is also counted (a metric), if anywhere.
    private let busyCounter: FloatingPointCounter?

    private struct State {
        var running = 0
        var highest = 0
        /// The slots' time taken, summed up to `changed`.
        var busySeconds = 0.0
        var changed = ContinuousClock.now

        /// Adds the time since the last change at the present count (before it changes), to
        /// the sum and to `counter`.
        mutating func accrue(_ counter: FloatingPointCounter?) {
            let now = ContinuousClock.now
            let added = Double(running) * (now - changed).seconds
            changed = now
            guard added > 0 else { return }
            busySeconds += added
            counter?.increment(by: added)
        }
        /// In arrival order; each called with true when the slot passes to it.
        var waiters = CircularBuffer<(id: UInt64, grant: Grant)>()
    }

    /// Waiter ids, one space for every limit and every kind of waiter (a task in `run`, a
    /// call queued by the HTTP pool), so a withdrawal never takes another's place.
    private static let ids = Atomic<UInt64>(0)

    static func newID() -> UInt64 {
        ids.add(1, ordering: .relaxed).newValue
    }

    /// `busyCounter`: a metric of the slots' time taken (its rate: the mean number taken).
    public init(_ limit: Int, busyCounter: FloatingPointCounter? = nil) {
        self.limit = max(limit, 1)
        self.busyCounter = busyCounter
        state = Mutex(State())
    }

    /// The most bodies that ever ran at once.
    public var highestInFlight: Int { state.withLock { $0.highest } }
    public var inFlight: Int { state.withLock { $0.running } }

    /// The slots' time taken, summed since the limit was made: over a stretch of time,
    /// divided by its length, the mean number of slots taken (`limit` when the callers
    /// always had more waiting than it lets through).
    public var busySeconds: Double {
        state.withLock { state in
            state.accrue(busyCounter)
            return state.busySeconds
        }
    }

    public func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async throws {
        let id = Self.newID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                guard !Task.isCancelled else {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                let granted = acquire(id: id) { granted in
                    if granted { continuation.resume() } else { continuation.resume(throwing: CancellationError()) }
                }
                if granted { continuation.resume() }
            }
        } onCancel: {
            withdraw(id: id)?(false)
        }
    }

    /// A waiter's call: true when the slot passes to it, false when it is withdrawn.
    typealias Grant = @Sendable (_ granted: Bool) -> Void

    /// Takes a slot now (true, `grant` not called), or queues `grant`, called with true by
    /// the `release` that frees a slot for it (false).
    func acquire(id: UInt64, grant: @escaping Grant) -> Bool {
        state.withLock { state in
            if state.running < limit {
                state.accrue(busyCounter)
                state.running += 1
                state.highest = max(state.highest, state.running)
                return true
            }
            state.waiters.append((id, grant))
            return false
        }
    }

    /// Takes a queued waiter out of the line and returns its grant (not called); nil if it
    /// is not there (granted already).
    func withdraw(id: UInt64) -> Grant? {
        state.withLock { state in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index).grant
        }
    }

    /// Frees a slot: it passes to the first waiter, whose grant runs here.
    func release() {
        let next = state.withLock { state -> Grant? in
            guard let waiter = state.waiters.popFirst() else {
                state.accrue(busyCounter)
                state.running -= 1
                return nil
            }
            return waiter.grant
        }
        next?(true)
    }
}
