import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

extension CircularBuffer where Element == PooledCall {
    /// Takes the call with `id` out of the line; false if it is not there.
    mutating func remove(id: UInt64) -> Bool {
        guard let index = firstIndex(where: { $0.id == id }) else { return false }
        remove(at: index)
        return true
    }
}

/// One call's state in the pool, shared by its caller, the budget, the event loops and its
/// timers: resumed exactly once.
final class PooledCall: Sendable {
    let call: HTTP1Call
    let key: HTTP1Pool.HostKey
    let id: UInt64
    let budget: ConcurrencyLimit?
    private let state = Mutex(State())

    private struct State {
        var continuation: CheckedContinuation<HTTP1Answer, any Error>?
        var deadline: NIODeadline?
        var attempt = 0
        var ended = 0
        var reused = false
        var retried = false
        var timer: Scheduled<Void>?
    }

    init(_ call: HTTP1Call, key: HTTP1Pool.HostKey, id: UInt64, budget: ConcurrencyLimit?) {
        self.call = call
        self.key = key
        self.id = id
        self.budget = budget
    }

    func await(_ continuation: CheckedContinuation<HTTP1Answer, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// Sets the deadline, when the call gets its slot.
    func start() -> NIODeadline {
        state.withLock { state in
            let deadline = NIODeadline.now() + call.timeout
            state.deadline = deadline
            return deadline
        }
    }

    var deadline: NIODeadline { state.withLock { $0.deadline } ?? .now() }

    /// When the call got its slot.
    var startedAt: NIODeadline { state.withLock { $0.deadline.map { $0 - call.timeout } } ?? .now() }

    /// The timer of a wait for a connection (cancelled when the call is sent).
    func arm(_ timer: Scheduled<Void>) {
        state.withLock { $0.timer = timer }
    }

    /// The attempt being written, its wait's timer cancelled.
    func sending(reused: Bool) -> Int {
        let (attempt, timer) = state.withLock { state in
            state.attempt += 1
            state.reused = reused
            defer { state.timer = nil }
            return (state.attempt, state.timer)
        }
        timer?.cancel()
        return attempt
    }

    /// True for the first report of an attempt's end.
    func endAttempt(_ attempt: Int) -> Bool {
        state.withLock { state in
            guard state.ended < attempt else { return false }
            state.ended = attempt
            return true
        }
    }

    /// Whether a connection failure may be tried once more: a GET, on a reused connection,
    /// not tried again before, and before its deadline.
    func mayRetry() -> Bool {
        guard call.method == .GET else { return false }
        return state.withLock { state in
            guard state.reused, !state.retried, let deadline = state.deadline, NIODeadline.now() < deadline else {
                return false
            }
            state.retried = true
            return true
        }
    }

    func complete(_ result: Result<HTTP1Answer, any Error>) {
        let continuation = state.withLock { state in
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(with: result)
    }
}
