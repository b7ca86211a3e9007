import Synchronization

/// At most one log line per interval for an event that can repeat on every request (a
/// dependency down under load): the first occurrence is logged at once, later ones within
/// the interval are counted, and the next line says how many were left out.
public final class LogThrottle: Sendable {
    private let interval: Duration
    private let state = Mutex<(last: ContinuousClock.Instant?, suppressed: Int)>((nil, 0))

    public init(every interval: Duration) {
        self.interval = interval
    }

    /// Whether to log now, and how many occurrences were left out since the last line.
    public func admit(now: ContinuousClock.Instant = .now) -> (log: Bool, suppressed: Int) {
        state.withLock { state in
            if let last = state.last, now - last < interval {
                state.suppressed += 1
                return (false, 0)
            }
            let suppressed = state.suppressed
            state = (now, 0)
            return (true, suppressed)
        }
    }
}
