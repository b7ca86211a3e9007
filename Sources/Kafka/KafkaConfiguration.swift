/// librdkafka properties for one client. Anything librdkafka accepts can be set, so SASL,
/// SSL and tuning need no code change; prewarm's defaults come first and are overridden
/// by what the operator passes.
public struct KafkaProperties: Sendable, Equatable {
    public private(set) var values: [String: String]

    public init(_ values: [String: String] = [:]) {
        self.values = values
    }

    public subscript(name: String) -> String? {
        get { values[name] }
        set { values[name] = newValue }
    }

    /// `base` overridden by `overrides`.
    public func merging(_ overrides: KafkaProperties) -> KafkaProperties {
        KafkaProperties(values.merging(overrides.values) { _, new in new })
    }

    /// Properties from environment variables: `PREWARM_KAFKA_SASL_MECHANISM=PLAIN` becomes
    /// `sasl.mechanism=PLAIN` (prefix removed, lower-cased, `_` becomes `.`).
    public static func fromEnvironment(_ environment: [String: String], prefix: String = "PREWARM_KAFKA_")
        -> KafkaProperties
    {
        var values: [String: String] = [:]
        for (name, value) in environment where name.hasPrefix(prefix) && name.count > prefix.count {
            let property = name.dropFirst(prefix.count).lowercased().replacingUnderscores()
            values[property] = value
        }
        return KafkaProperties(values)
    }

    /// Property names whose values must never be logged.
    static func isSecret(_ name: String) -> Bool {
        name.contains("password") || name.contains("secret") || name.hasSuffix(".key.pem")
            || name.contains("sasl.oauthbearer.config")
    }

    /// For logs: secrets masked.
    public var redacted: [String: String] {
        values.reduce(into: [:]) { result, entry in
            result[entry.key] = Self.isSecret(entry.key) ? "***" : entry.value
        }
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        String(map { $0 == "_" ? "." : $0 })
    }
}

/// A producer that loses nothing: acks from all in-sync replicas, idempotence on (no
/// duplicates or reordering from its own retries), key-hashing compatible with Java clients.
public struct KafkaProducerConfiguration: Sendable {
    public var properties: KafkaProperties
    /// How long `close()` waits for messages still in flight.
    public var flushTimeoutMilliseconds: Int

    /// The largest message a producer sends (`message.max.bytes`): twice Kafka's default, so
    /// that a message at its topic's limit can still be dead-lettered with prewarm's headers
    /// (dead-letter topics are created with `max.message.bytes` this large).
    public static let messageMaxBytes = 2_097_152

    public static let defaults: [String: String] = [
        "acks": "all",
        "enable.idempotence": "true",
        "partitioner": "murmur2_random",
        "linger.ms": "1",
        "compression.type": "lz4",
        "message.max.bytes": String(messageMaxBytes),
    ]

    public init(
        bootstrapServers: String, properties: KafkaProperties = KafkaProperties(),
        flushTimeoutMilliseconds: Int = 10_000
    ) {
        self.properties = KafkaProperties(Self.defaults.merging(["bootstrap.servers": bootstrapServers]) { $1 })
            .merging(properties)
        self.flushTimeoutMilliseconds = flushTimeoutMilliseconds
    }
}

/// A consumer in a group that commits only what the application says it has processed.
public struct KafkaConsumerConfiguration: Sendable {
    public var groupID: String
    public var properties: KafkaProperties
    /// Commit the offsets stored so far when partitions are revoked (and on close), so the
    /// next owner starts where this one stopped.
    public var commitOnRevoke: Bool

    public static let defaults: [String: String] = [
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        // The eager assignors: cooperative-sticky is broken on librdkafka 2.0's mock cluster.
        "partition.assignment.strategy": "range,roundrobin",
        "session.timeout.ms": "10000",
        "max.poll.interval.ms": "300000",
    ]

    public init(
        groupID: String,
        bootstrapServers: String,
        properties: KafkaProperties = KafkaProperties(),
        commitOnRevoke: Bool = true
    ) {
        self.groupID = groupID
        self.properties = KafkaProperties(
            Self.defaults.merging(["bootstrap.servers": bootstrapServers, "group.id": groupID]) { $1 }
        ).merging(properties)
        self.commitOnRevoke = commitOnRevoke
    }
}
