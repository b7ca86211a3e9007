import Kafka
import Synchronization

/// What the consume loop has done, for health checks, metrics and tests.
public final class ConsumeLoopStatistics: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var consumed = 0
        public var processed = 0
        public var deadLettered = 0
        public var transientFailures = 0
        public var commitFailures = 0
        public var pausedPartitions: Set<KafkaTopicPartition> = []
        public var assignedPartitions: Set<KafkaTopicPartition> = []
        public var lastPoll: ContinuousClock.Instant?
    }

    private let state = Mutex(Snapshot())

    public init() {}

    public var snapshot: Snapshot { state.withLock { $0 } }

    func update(_ change: (inout Snapshot) -> Void) {
        state.withLock { change(&$0) }
    }
}
