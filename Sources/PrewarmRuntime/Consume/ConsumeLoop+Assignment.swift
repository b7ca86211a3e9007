import CoreMetrics
import Kafka
import Logging
import PrewarmConfiguration
import ServiceLifecycle
import Synchronization

/// The group's assignment as the loop tracks it: rebalance events applied, paused partitions resumed when due.
extension ConsumeLoop {
    func resumeDue(_ state: inout PartitionStates) async throws {
        let due = state.dueForResume(at: .now)
        guard !due.isEmpty else { return }
        try await consumer.resume(due)
        statistics.update { $0.pausedPartitions.subtract(due) }
        logger.info("partitions resumed", metadata: ["partitions": "\(due)"])
    }

    func apply(_ events: [KafkaRebalanceEvent], to state: inout PartitionStates) async throws {
        for event in events {
            switch event {
            case .assigned(let partitions):
                state.assign(partitions)
                try await consumer.resume(partitions)  // nothing stays paused from an earlier owner
            case .revoked(let partitions):
                state.revoke(partitions)
                // Its new owner reports its lag now: a gauge left at its last value here would
                // count the partition twice in a group's sum (and hold a lag alert up).
                for partition in partitions { statistics.lag(partition, 0) }
            }
        }
        if !events.isEmpty {
            let assigned = state.assigned
            let joined = events.contains { if case .assigned = $0 { true } else { false } }
            let revoked = events.filter { if case .revoked(let partitions) = $0 { !partitions.isEmpty } else { false } }
            statistics.update {
                $0.revocations += revoked.count
                $0.assignedPartitions = assigned
                $0.pausedPartitions.formIntersection(assigned)
                $0.joined = $0.joined || joined
            }
        }
    }
}
