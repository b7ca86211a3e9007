import CoreMetrics
import Foundation
import Logging
import PrewarmRuntime
import Synchronization

/// A call refused because the service's circuit is open: transient (the caller backs off),
/// and nothing was sent.
public struct CircuitOpen: ClassifiedError, CustomStringConvertible {
    public let service: String
    public var failureKind: FailureKind { .transient }
    public var description: String { "\(service): circuit open, not calling it for now" }
}

/// Stops calling a service that keeps failing, and probes it again later.
///
/// Closed: calls go through; `failures` transient failures in a row open it. Open: calls
/// fail at once with `CircuitOpen` for `coolDown`. Then one call is let through as a probe
/// (half-open): its success closes the circuit, its failure opens it for another
/// `coolDown`. Permanent failures (a 4xx) say nothing about the service's health and leave
/// the count alone.
public final class CircuitBreaker: Sendable {
    public let service: String
    public let failures: Int
    public let coolDown: Duration
    private let logger: Logger
    private let state = Mutex(State())
    /// 1 while open (or probing), 0 when closed: `prewarm_push_circuit_open{service}`.
    private let openGauge: Gauge
    /// `prewarm_push_circuit_opened_total{service}`, `prewarm_push_calls_refused_total{service}`.
    private let openedCounter: Counter
    private let refusedCounter: Counter

    struct State {
        var consecutiveFailures = 0
        var openUntil: ContinuousClock.Instant?
        var probing = false
        var opened = 0
        var refused = 0
    }

    public enum Phase: String, Sendable { case closed, open, halfOpen = "half-open" }

    public init(
        service: String, failures: Int, coolDown: Duration, logger: Logger,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.service = service
        self.failures = max(failures, 1)
        self.coolDown = coolDown
        self.logger = logger
        let dimensions = [("service", service)]
        openGauge = Gauge(label: "prewarm_push_circuit_open", dimensions: dimensions, factory: metricsFactory)
        openedCounter = Counter(
            label: "prewarm_push_circuit_opened_total", dimensions: dimensions, factory: metricsFactory)
        refusedCounter = Counter(
            label: "prewarm_push_calls_refused_total", dimensions: dimensions, factory: metricsFactory)
        openGauge.record(0)
    }

    /// How often it opened, and how many calls it refused.
    public var counts: (opened: Int, refused: Int) { state.withLock { ($0.opened, $0.refused) } }

    public var phase: Phase {
        state.withLock { state in
            guard let until = state.openUntil else { return .closed }
            return ContinuousClock.now < until ? .open : .halfOpen
        }
    }

    /// Runs `body`, which calls `admit` at the moment its call goes (the runtime's HTTP pool
    /// does when the call gets its slot of the budget, not when it starts waiting for one):
    /// `admit` throws `CircuitOpen` if the circuit refuses it then. The outcome of an
    /// admitted call is recorded; a refused one is not a failure of the service.
    public func call<T: Sendable>(_ body: (_ admit: @escaping @Sendable () throws -> Void) async throws -> T)
        async throws -> T
    {
        let passage = Passage(self)
        do {
            let value = try await body { try passage.admit() }
            passage.succeeded()
            return value
        } catch {
            passage.failed(error)
            throw error
        }
    }

    /// One call's way through the breaker: whether it was admitted, and as the probe.
    private final class Passage: Sendable {
        private let breaker: CircuitBreaker
        private let admitted = Mutex<(passed: Bool, probe: Bool)>((false, false))

        init(_ breaker: CircuitBreaker) {
            self.breaker = breaker
        }

        func admit() throws {
            let probe = try breaker.admit()
            admitted.withLock { $0 = (true, probe) }
        }

        func succeeded() {
            let (passed, probe) = admitted.withLock { $0 }
            if passed { breaker.succeeded(probe: probe) }
        }

        func failed(_ error: any Error) {
            let (passed, probe) = admitted.withLock { $0 }
            if passed { breaker.failed(error, probe: probe) }
        }
    }

    /// Lets a call through (true if it is the probe of a half-open circuit) or refuses it.
    private func admit() throws -> Bool {
        try state.withLock { state in
            guard let until = state.openUntil else { return false }
            if ContinuousClock.now < until || state.probing {
                state.refused += 1
                refusedCounter.increment()
                throw CircuitOpen(service: service)
            }
            state.probing = true
            return true
        }
    }

    private func succeeded(probe: Bool) {
        let closed = state.withLock { state in
            state.consecutiveFailures = 0
            guard probe else { return false }
            state.openUntil = nil
            state.probing = false
            return true
        }
        if closed {
            openGauge.record(0)
            logger.notice("circuit closed: the service answers again", metadata: ["service": "\(service)"])
        }
    }

    private func failed(_ error: any Error, probe: Bool) {
        let transient = (error as? any ClassifiedError)?.failureKind == .transient
        let opened: Bool = state.withLock { state in
            if probe {
                state.probing = false
                if transient || error is CancellationError {
                    state.openUntil = .now + coolDown
                } else {
                    state.openUntil = nil  // it answered, if with a refusal
                    state.consecutiveFailures = 0
                }
                return false
            }
            guard transient else { return false }
            state.consecutiveFailures += 1
            guard state.openUntil == nil, state.consecutiveFailures >= failures else { return false }
            state.openUntil = .now + coolDown
            state.opened += 1
            return true
        }
        if opened {
            openGauge.record(1)
            openedCounter.increment()
            logger.error(
                "circuit opened: the service keeps failing; calls stop until a probe succeeds",
                metadata: [
                    "service": "\(service)", "failures_in_a_row": "\(failures)", "probe_after": "\(coolDown)",
                    "error": "\(error)",
                ])
        }
    }
}
