import Kafka

/// One Kafka topic of the fleet. `topics.md` documents each (a test keeps the two equal).
public struct TopicSpec: Sendable, Equatable {
    public let name: String
    public let partitions: Int
    /// The consumer group of prewarm that reads it, if any.
    public let consumerGroup: String?
    /// Dead letters of this topic go to `<name>.dlq`.
    public let hasDeadLetterTopic: Bool

    public var deadLetterTopic: String? { hasDeadLetterTopic ? Self.deadLetterTopic(of: name) : nil }

    /// `<topic>.dlq`: the one place the name is built.
    public static func deadLetterTopic(of topic: String) -> String { topic + ".dlq" }

    /// The topic a dead-letter topic belongs to, if `name` is one.
    public static func sourceTopic(ofDeadLetterTopic name: String) -> String? {
        name.hasSuffix(".dlq") ? String(name.dropLast(4)) : nil
    }
}

/// Every topic prewarm produces or consumes. `prewarmctl dev-broker` and `topics create`
/// create exactly these.
public enum TopicCatalog {
    public static let storeEntry = TopicSpec(
        name: "store.entry.v1", partitions: 12, consumerGroup: "entry-ingest", hasDeadLetterTopic: true)
    public static let storeRecommendationBatches = TopicSpec(
        name: "store-rec.batches.v1", partitions: 12, consumerGroup: "store-scorer", hasDeadLetterTopic: true)
    public static let liveReservation = TopicSpec(
        name: "live.reservation.v1", partitions: 6, consumerGroup: "ka-prewarmer", hasDeadLetterTopic: true)
    public static let bookRecommendationBatches = TopicSpec(
        name: "book-rec.batches.v1", partitions: 12, consumerGroup: "push-producer", hasDeadLetterTopic: true)
    public static let bookRecommendationPush = TopicSpec(
        name: "push.book-rec.v1", partitions: 12, consumerGroup: nil, hasDeadLetterTopic: false)

    /// Partitions of every dead-letter topic.
    public static let deadLetterPartitions = 3

    /// The topic configs a dead-letter topic is created with: a message at its source topic's
    /// limit still fits with prewarm's headers (larger ones are kept in PostgreSQL).
    public static let deadLetterConfigs = ["max.message.bytes": String(KafkaProducerConfiguration.messageMaxBytes)]

    public static let sources: [TopicSpec] = [
        storeEntry, storeRecommendationBatches, liveReservation, bookRecommendationBatches, bookRecommendationPush,
    ]

    /// Every topic with its partition count, dead-letter topics included.
    public static var all: [(name: String, partitions: Int)] {
        sources.flatMap { spec -> [(name: String, partitions: Int)] in
            var topics = [(spec.name, spec.partitions)]
            if let dlq = spec.deadLetterTopic { topics.append((dlq, deadLetterPartitions)) }
            return topics
        }
    }
}
