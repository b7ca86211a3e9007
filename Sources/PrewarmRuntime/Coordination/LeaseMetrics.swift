import CoreMetrics
import Kafka
import Synchronization

/// Lease renewals and losses (`prewarm_lease_renewals_total`, `prewarm_lease_losses_total`).
public struct LeaseMetrics: Sendable {
    let renewals: Counter
    let losses: Counter

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        renewals = Counter(label: "prewarm_lease_renewals_total", dimensions: [], factory: factory)
        losses = Counter(label: "prewarm_lease_losses_total", dimensions: [], factory: factory)
    }

    func renewed() { renewals.increment() }
    func lost() { losses.increment() }
}
