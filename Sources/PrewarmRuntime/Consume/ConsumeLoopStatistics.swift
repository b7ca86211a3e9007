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
        public var lastPoll: ContinuousClock.Instant?
        /// When the current outage began (the first transient failure since a success).
        public var failingSince: ContinuousClock.Instant?
    }

    private let group: String
    private let factory: any MetricsFactory
    private let state = Mutex(Snapshot())
    private let counters = Mutex<[String: Counter]>([:])
    private let gauges = Mutex<[String: Gauge]>([:])
    private let timers = Mutex<[String: Timer]>([:])

    public init(group: String, factory: any MetricsFactory = MetricsSystem.factory) {
        self.group = group
        self.factory = factory
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
        let key = "prewarm_batch_duration_seconds|\(topic)"
        let timer = timers.withLock { timers in
            if let timer = timers[key] { return timer }
            let timer = Timer(label: "prewarm_batch_duration_seconds", dimensions: dimensions(topic), factory: factory)
            timers[key] = timer
            return timer
        }
        timer.recordNanoseconds(Int64(duration.seconds * 1e9))
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
