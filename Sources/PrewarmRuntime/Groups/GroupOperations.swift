import Foundation
import Kafka
import Logging

/// A consumer group's position on one partition.
public struct PartitionLag: Sendable, Equatable {
    public let partition: KafkaTopicPartition
    /// `nil` when the group has committed nothing there yet.
    public let committed: Int64?
    public let low: Int64
    public let high: Int64

    /// Messages not yet processed: from the committed offset (or the earliest kept one)
    /// to the high watermark.
    public var lag: Int64 { high - max(committed ?? low, low) }
}

/// Read-only and offset-changing operations on consumer groups, for `prewarmctl`.
public struct GroupOperations: Sendable {
    public let bootstrapServers: String
    public let properties: KafkaProperties
    public let logger: Logger

    public init(bootstrapServers: String, properties: KafkaProperties, logger: Logger) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
        self.logger = logger
    }

    /// Committed offset against the high watermark, per partition of `topics`.
    public func lag(group: String, topics: [String]) async throws -> [PartitionLag] {
        try await using(try admin()) { admin in
            let partitions = try await self.partitions(of: topics, admin: admin)
            let committed = try await admin.committedOffsets(group: group, partitions: partitions)
            let marks = try await admin.watermarks(partitions)
            return partitions.map { partition in
                PartitionLag(
                    partition: partition, committed: committed[partition] ?? nil, low: marks[partition]!.low,
                    high: marks[partition]!.high)
            }
        }
    }

    func admin() throws -> KafkaAdmin {
        try KafkaAdmin(bootstrapServers: bootstrapServers, properties: properties, logger: logger)
    }

    /// `briefMember`: a member that joins only to commit and leave (an offset reset) gets a
    /// short session (6 s, the least a broker allows by default) unless the properties set
    /// one, so a group it leaves behind (librdkafka's mock keeps a rebalance waiting on the
    /// session of its last member, past the leave) or a reset that crashed holds the
    /// workers' next join seconds, not the 45 s default.
    func consumer(group: String, commitOnRevoke: Bool = true, briefMember: Bool = false) throws -> KafkaConsumer {
        let brief = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"])
        return try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: group, bootstrapServers: bootstrapServers,
                properties: briefMember ? brief.merging(properties) : properties, commitOnRevoke: commitOnRevoke),
            logger: logger)
    }

    func partitions(of topics: [String], admin: KafkaAdmin) async throws -> [KafkaTopicPartition] {
        let counts = try await admin.partitionCounts(topics)
        if let missing = topics.first(where: { counts[$0] == nil }) {
            throw UnknownTopic(topic: missing)
        }
        return topics.flatMap { topic in (0..<counts[topic]!).map { KafkaTopicPartition(topic, Int32($0)) } }
    }
}
