import Kafka
import Logging
import Redis

/// Which messages a consumer group has dead-lettered, in Redis, so that a message handled
/// again is not dead-lettered again by any pod of the group: its batch finished after a
/// rebalance took its partition (the offset could not be committed, and the next owner
/// reads it again), or the group's offsets were reset for a replay.
///
/// One key a letter, `prewarm:dlq-sent:{group}:{topic}:{partition}:{offset}`, kept for
/// `retention`; its value names the message (its timestamp and a hash of its key and value),
/// so a topic recreated with the same offsets is not mistaken for the old one, and where the
/// DLQ put its letter (`<identity>@<dlq partition>:<dlq offset>`), so a letter the broker
/// lost after acknowledging it is sent again (`DeadLetterAudit`). Marked only once the DLQ
/// acknowledged the letter. Redis unreachable: the letters are sent anyway and
/// not marked (a second letter beats a lost one).
public struct DeadLetterMarks: Sendable {
    public let redis: any RedisClient
    public let group: String
    public let retention: Duration
    public static let prefix = "prewarm:dlq-sent:"

    public init(redis: any RedisClient, group: String, retention: Duration) {
        self.redis = redis
        self.group = group
        self.retention = retention
    }

    func key(_ message: KafkaMessage) -> String {
        "\(Self.prefix)\(group):\(message.topic):\(message.partition):\(message.offset)"
    }

    /// What the mark holds: the message's timestamp and an FNV-1a hash of its key and value.
    static func identity(_ message: KafkaMessage) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func add(_ bytes: some Sequence<UInt8>) {
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        add(message.key ?? [])
        add(CollectionOfOne(0xFF))  // between key and value: ("ab", "c") is not ("a", "bc")
        add(message.value)
        return "\(message.timestampMilliseconds ?? -1):\(String(hash, radix: 16))"
    }

    /// Where the DLQ acknowledged a letter.
    struct Position: Sendable, Equatable {
        let partition: Int32
        let offset: Int64
    }

    /// What a mark holds: the message's identity, then where its letter went.
    static func value(_ message: KafkaMessage, at position: Position) -> String {
        "\(identity(message))@\(position.partition):\(position.offset)"
    }

    /// The indices of `messages` this group has dead-lettered already, with where each letter
    /// went (none for a mark written before marks recorded it); none when Redis does not
    /// answer.
    func alreadySent(_ messages: [KafkaMessage], logger: Logger) async -> [Int: Position?] {
        guard !messages.isEmpty else { return [:] }
        do {
            let replies = try await redis.pipeline(messages.map { RedisCommand("GET", arguments: [key($0)]) })
            var sent: [Int: Position?] = [:]
            for (index, (message, reply)) in zip(messages, replies).enumerated() {
                guard let value = reply.string else { continue }
                let parts = value.split(separator: "@", maxSplits: 1)
                guard parts.first.map(String.init) == Self.identity(message) else { continue }
                let place = parts.count == 2 ? parts[1].split(separator: ":") : []
                if place.count == 2, let partition = Int32(place[0]), let offset = Int64(place[1]) {
                    sent[index] = Position(partition: partition, offset: offset)
                } else {
                    sent[index] = .some(nil)
                }
            }
            return sent
        } catch {
            logger.warning(
                "dead-letter marks not read: the letters are sent without the check",
                metadata: ["error": "\(error)"])
            return [:]
        }
    }

    /// Marks `letters` as dead-lettered by this group, each with where the DLQ put it.
    func mark(_ letters: [(message: KafkaMessage, position: Position)], logger: Logger) async {
        guard !letters.isEmpty else { return }
        let seconds = max(Int(retention.components.seconds), 1)
        do {
            try await redis.checkedPipeline(
                letters.map {
                    RedisCommand(
                        "SET", arguments: [key($0.message), Self.value($0.message, at: $0.position), "EX", seconds])
                })
        } catch {
            logger.warning(
                "dead-letter marks not written: a message handled again may be dead-lettered again",
                metadata: ["error": "\(error)"])
        }
    }
}
