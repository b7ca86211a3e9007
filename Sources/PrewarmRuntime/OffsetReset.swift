import Foundation
import Kafka

/// Where `prewarmctl offsets reset` moves a group.
public enum ResetTarget: Sendable, Equatable, CustomStringConvertible {
    case earliest
    case latest
    /// The first message at or after this time, per partition.
    case time(Date)
    /// The same offset on every partition, kept within what the partition still holds.
    case offset(Int64)

    /// `earliest`, `latest`, an RFC 3339 time (`2026-11-21T00:00:00+08:00`) or an offset.
    public init(parsing text: String) throws {
        switch text {
        case "earliest": self = .earliest
        case "latest": self = .latest
        default:
            if let offset = Int64(text), offset >= 0 {
                self = .offset(offset)
            } else if let date = ISO8601DateFormatter().date(from: text) {
                self = .time(date)
            } else {
                throw UsageError(
                    "'\(text)' is not a reset target: use earliest, latest, an RFC 3339 time or an offset")
            }
        }
    }

    public var description: String {
        switch self {
        case .earliest: return "earliest"
        case .latest: return "latest"
        case .time(let date): return ISO8601DateFormatter().string(from: date)
        case .offset(let offset): return String(offset)
        }
    }
}

/// The group has members other than the resetting one: its workers are still running.
public struct GroupHasActiveMembers: Error, CustomStringConvertible {
    public let group: String
    public let assigned: Int
    public let partitions: Int
    public var description: String {
        "group \(group) has other active members (this reset was given \(assigned) of \(partitions) partitions): "
            + "stop its workers (scale them to 0) and run the reset again"
    }
}

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

/// Binary search for the first message at or after a time, reading single messages.
/// Timestamps in a partition are nearly but not strictly ordered (producers set them), so
/// on unordered data the result is a good place to start, as Kafka's own time index gives.
struct TimestampSearch {
    let consumer: KafkaConsumer
    let partition: KafkaTopicPartition

    mutating func firstOffset(atOrAfter milliseconds: Int64, low: Int64, high: Int64) async throws -> Int64 {
        guard try await timestamp(at: high - 1) >= milliseconds else { return high }
        var lower = low
        var upper = high - 1  // invariant: the message at `upper` is recent enough
        while lower < upper {
            let middle = lower + (upper - lower) / 2
            if try await timestamp(at: middle) >= milliseconds { upper = middle } else { lower = middle + 1 }
        }
        return lower
    }

    private func timestamp(at offset: Int64) async throws -> Int64 {
        try await consumer.assign([partition: offset])
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            for message in try await consumer.poll(maxMessages: 10, timeoutMilliseconds: 200).messages
            where message.topicPartition == partition && message.offset >= offset {
                return message.timestampMilliseconds ?? 0
            }
        }
        throw TimedOut("reading \(partition) at offset \(offset)", after: .seconds(10))
    }
}
