/// Exponential backoff with full jitter, bounded: attempt 0 waits up to `initial`, each
/// later attempt up to twice the previous bound, never more than `maximum`. Jitter keeps
/// the pods of a fleet from retrying an outage in lockstep.
public struct Backoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration = .milliseconds(200), maximum: Duration = .seconds(30)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The upper bound for `attempt` (0-based), before jitter.
    public func bound(attempt: Int) -> Duration {
        let factor = 1 << min(max(attempt, 0), 30)
        let grown = initial * factor
        return grown > maximum || grown < initial ? maximum : grown
    }

    /// A random delay from half the bound to the bound ("equal jitter": never near zero,
    /// so a hard outage is not hammered).
    public func delay(attempt: Int, using random: inout some RandomNumberGenerator) -> Duration {
        let bound = bound(attempt: attempt)
        let fraction = Double.random(in: 0.5...1, using: &random)
        return bound * fraction
    }

    public func delay(attempt: Int) -> Duration {
        var random = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &random)
    }
}
