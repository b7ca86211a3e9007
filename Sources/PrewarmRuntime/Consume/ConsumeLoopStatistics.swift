import CoreMetrics
import Kafka
import Synchronization

/// The one place a consume loop counts what it did: each count updates both the snapshot
/// (for `/healthz`, `/readyz` and tests) and the Prometheus metrics. Labels are the group,
/// topics, partitions and error classes: bounded sets, never user or shop ids. Metric objects
/// are made once per label set and kept.
public final class ConsumeLoopStatistics: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var consumed = 0
        public var processed = 0
        public var deadLettered = 0
        public var transientFailures = 0
        public var commitFailures = 0
        public var pausedPartitions: Set<KafkaTopicPartition> = []
        public var assignedPartitions: Set<KafkaTopicPartition> = []
        /// True once the group gave this member an assignment, even an empty one (more pods
        /// than partitions): the member is in the group and ready.
        public var joined = false
        /// Rebalances that took partitions from this member (each may leave the batch in hand
        /// to be handled again by the next owner).
        public var revocations = 0
        public var lastPoll: ContinuousClock.Instant?
        /// When the current outage began (the first transient failure since a success).
        public var failingSince: ContinuousClock.Instant?
    }

    private let group: String
    private let factory: any MetricsFactory
    private let state = Mutex(Snapshot())
    private let counters: MetricHandles<CounterKey, Counter>
    private let lags: MetricHandles<KafkaTopicPartition, Gauge>
    private let durations: MetricHandles<String, Timer>

    /// A counter's label set: its name, topic and extra labels.
    private struct CounterKey: Hashable, Sendable {
        let label: String
        let topic: String?
        let extra: [LabelPair]
    }

    public init(group: String, factory: any MetricsFactory = MetricsSystem.factory) {
        self.group = group
        self.factory = factory
        @Sendable func dimensions(_ topic: String?) -> [(String, String)] {
            [("group", group)] + (topic.map { [("topic", $0)] } ?? [])
        }
        counters = MetricHandles { key in
            Counter(
                label: key.label, dimensions: dimensions(key.topic) + key.extra.map { ($0.first, $0.second) },
                factory: factory)
        }
        lags = MetricHandles { partition in
            Gauge(
                label: "prewarm_consumer_lag",
                dimensions: dimensions(partition.topic) + [("partition", String(partition.partition))], factory: factory
            )
        }
        durations = MetricHandles { topic in
            Timer(label: "prewarm_batch_duration_seconds", dimensions: dimensions(topic), factory: factory)
        }
    }

    public var snapshot: Snapshot { state.withLock { $0 } }

    func update(_ change: (inout Snapshot) -> Void) {
        state.withLock { change(&$0) }
    }

    func polled() { update { $0.lastPoll = .now } }

    func consumed(_ topic: String, _ count: Int) {
        update { $0.consumed += count }
        counter("prewarm_messages_consumed_total", topic).increment(by: count)
    }

    func processed(_ topic: String, _ count: Int) {
        update {
            $0.processed += count
            $0.failingSince = nil
        }
        counter("prewarm_messages_processed_total", topic).increment(by: count)
    }

    /// Returns when the outage began.
    func failedTransiently(_ topic: String) -> ContinuousClock.Instant {
        let since = state.withLock { state in
            state.transientFailures += 1
            let since = state.failingSince ?? .now
            state.failingSince = since
            return since
        }
        counter("prewarm_batch_failures_total", topic).increment()
        return since
    }

    func commitFailed() {
        update { $0.commitFailures += 1 }
        counter("prewarm_commit_failures_total", nil).increment()
    }

    func deadLettered(_ topic: String, errorClass: String) {
        update { $0.deadLettered += 1 }
        counter("prewarm_messages_dead_lettered_total", topic, extra: [("error_class", errorClass)]).increment()
    }

    func batchDuration(_ topic: String, _ duration: Duration) {
        durations[topic].recordNanoseconds(Int64(duration.seconds * 1e9))
    }

    func lag(_ partition: KafkaTopicPartition, _ value: Int64) {
        lags[partition].record(value)
    }

    private func counter(_ label: String, _ topic: String?, extra: [(String, String)] = []) -> Counter {
        counters[CounterKey(label: label, topic: topic, extra: extra.map { LabelPair($0.0, $0.1) })]
    }
}
