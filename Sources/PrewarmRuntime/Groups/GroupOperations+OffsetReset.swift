import Foundation
import Kafka

extension GroupOperations {
    /// Moves `group`'s committed offsets on `topic` to `target`, which is how operators
    /// replay. It joins the group as a member and commits from there (the admin API is
    /// refused by librdkafka's mock for any group that has had members); if another member
    /// is active it is given only part of the partitions, and the reset is refused.
    /// Returns the offsets committed.
    public func resetOffsets(
        group: String, topic: String, to target: ResetTarget, joinTimeout: Duration = .seconds(60)
    ) async throws -> [KafkaTopicPartition: Int64] {
        let partitions = try await using(try admin()) { try await self.partitions(of: [topic], admin: $0) }
        return try await using(try consumer(group: group, commitOnRevoke: false, briefMember: true)) { consumer in
            try await resetAsMember(consumer, group, topic, partitions, target, joinTimeout)
        }
    }

    private func resetAsMember(
        _ consumer: KafkaConsumer, _ group: String, _ topic: String, _ partitions: [KafkaTopicPartition],
        _ target: ResetTarget, _ joinTimeout: Duration
    ) async throws -> [KafkaTopicPartition: Int64] {
        try await consumer.subscribe([topic])
        let deadline = ContinuousClock.now + joinTimeout
        var assigned: [KafkaTopicPartition] = []
        while assigned.isEmpty {
            guard ContinuousClock.now < deadline else {
                throw TimedOut("joining group \(group)", after: joinTimeout)
            }
            // Messages fetched meanwhile are ignored: nothing is committed from them.
            _ = try await consumer.poll(maxMessages: 1, timeoutMilliseconds: 200)
            assigned = try await consumer.assignment()
        }
        guard Set(assigned) == Set(partitions) else {
            throw GroupHasActiveMembers(group: group, assigned: assigned.count, partitions: partitions.count)
        }
        var targets: [KafkaTopicPartition: Int64] = [:]
        var times: [KafkaTopicPartition: Int64?] = [:]
        if case .time(let date) = target {
            times = try await consumer.offsets(atOrAfter: Int64(date.timeIntervalSince1970 * 1000), partitions)
        }
        let allMarks = try await consumer.watermarks(partitions)
        for partition in partitions {
            let marks = allMarks[partition]!
            switch target {
            case .earliest: targets[partition] = marks.low
            case .latest: targets[partition] = marks.high
            case .time(let date):
                targets[partition] = try await offset(
                    atOrAfter: Int64(date.timeIntervalSince1970 * 1000), in: partition, low: marks.low,
                    high: marks.high,
                    brokerAnswer: times[partition] ?? nil)
            case .offset(let offset): targets[partition] = min(max(offset, marks.low), marks.high)
            }
        }
        try await consumer.commit(offsets: targets)
        logger.notice(
            "offsets reset",
            metadata: ["group": "\(group)", "topic": "\(topic)", "to": "\(target)", "offsets": "\(targets)"])
        return targets
    }
}

extension GroupOperations {
    /// The first offset whose timestamp is at or after `milliseconds`. The broker's answer
    /// stands when it names an offset. When it says "none" (the end) although the last
    /// message is that recent, the broker cannot look up times (librdkafka's mock answers
    /// every such request with the end), so the offset is found by a binary search over
    /// message timestamps. That costs one read on a real broker, and only in that case.
    func offset(
        atOrAfter milliseconds: Int64, in partition: KafkaTopicPartition, low: Int64, high: Int64, brokerAnswer: Int64?
    ) async throws -> Int64 {
        if let brokerAnswer { return brokerAnswer }
        guard high > low else { return high }
        return try await using(try consumer(group: "prewarmctl-probe-\(UUID().uuidString)", commitOnRevoke: false)) {
            var searcher = TimestampSearch(consumer: $0, partition: partition)
            return try await searcher.firstOffset(atOrAfter: milliseconds, low: low, high: high)
        }
    }
}
