import CoreMetrics
import Kafka
import Synchronization

/// The metrics every worker exports, through swift-metrics (Prometheus in production).
/// Labels are topics, partitions and error classes: bounded sets, never user or shop ids.
/// Metric objects are made once per label set and kept.
public final class WorkerMetrics: Sendable {
    private let factory: MetricsFactory
    private let group: String
    private let counters = Mutex<[String: Counter]>([:])
    private let gauges = Mutex<[String: Gauge]>([:])
    private let timers = Mutex<[String: Timer]>([:])

    public init(group: String, factory: MetricsFactory = MetricsSystem.factory) {
        self.group = group
        self.factory = factory
    }

    func consumed(_ topic: String, _ count: Int) {
        counter("prewarm_messages_consumed_total", topic).increment(by: count)
    }
    func processed(_ topic: String, _ count: Int) {
        counter("prewarm_messages_processed_total", topic).increment(by: count)
    }
    func failed(_ topic: String) { counter("prewarm_batch_failures_total", topic).increment() }
    func commitFailed() { counter("prewarm_commit_failures_total", nil).increment() }
    public func leaseRenewed() { counter("prewarm_lease_renewals_total", nil).increment() }
    public func leaseLost() { counter("prewarm_lease_losses_total", nil).increment() }

    func deadLettered(_ topic: String, errorClass: String) {
        counter("prewarm_messages_dead_lettered_total", topic, extra: [("error_class", errorClass)]).increment()
    }

    func batchDuration(_ topic: String, _ duration: Duration) {
        let key = "prewarm_batch_duration_seconds|\(topic)"
        let timer = timers.withLock { timers in
            if let timer = timers[key] { return timer }
            let timer = Timer(label: "prewarm_batch_duration_seconds", dimensions: dimensions(topic), factory: factory)
            timers[key] = timer
            return timer
        }
        timer.recordNanoseconds(
            duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    func lag(_ partition: KafkaTopicPartition, _ value: Int64) {
        let key = "\(partition.topic)|\(partition.partition)"
        let gauge = gauges.withLock { gauges in
            if let gauge = gauges[key] { return gauge }
            let gauge = Gauge(
                label: "prewarm_consumer_lag",
                dimensions: dimensions(partition.topic) + [("partition", String(partition.partition))], factory: factory
            )
            gauges[key] = gauge
            return gauge
        }
        gauge.record(value)
    }

    private func dimensions(_ topic: String?) -> [(String, String)] {
        [("group", group)] + (topic.map { [("topic", $0)] } ?? [])
    }

    private func counter(_ label: String, _ topic: String?, extra: [(String, String)] = []) -> Counter {
        let key = ([label, topic ?? ""] + extra.map { "\($0.0)=\($0.1)" }).joined(separator: "|")
        return counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: dimensions(topic) + extra, factory: factory)
            counters[key] = counter
            return counter
        }
    }
}
