import Kafka
import Logging

/// Whether letters a group marked as sent are still where their DLQ acknowledged them.
///
/// A mark is written once the DLQ acknowledged the letter, and it stops the group from
/// sending the letter again. A broker can lose what it acknowledged: an unclean leader
/// election, or a broker that acknowledges before its disk has the record and restarts
/// (seen on noida-db: a letter acknowledged as the broker stopped was gone after its
/// restart). Trusting the mark then loses the letter silently. So before a marked letter is
/// skipped, the record at the mark's DLQ offset is read back: it must be this group's letter
/// of this message (its `prewarm-original-*` and `prewarm-consumer-group` headers). A
/// partition that now ends at or before that offset lost it; a record of another letter
/// there means the partition lost its tail and was written again. An offset already deleted
/// by retention (below the low watermark) was there and is taken as kept.
///
/// Reads with a consumer of its own that assigns the DLQ partitions (it joins no group and
/// commits nothing), made at the first audit and kept until the loop closes it: a replay meets
/// marked letters in batch after batch. One audit at a time (each assigns the reader anew).
actor DeadLetterAudit {
    /// The group whose letters are checked.
    let group: String
    let timeout: Duration
    let logger: Logger
    private let configuration: KafkaConsumerConfiguration
    private var reader: KafkaConsumer?

    /// `consumer`: the loop's consumer settings (bootstrap, security), under a group id of the
    /// audit's own that never joins.
    init(group: String, consumer: KafkaConsumerConfiguration, timeout: Duration = .seconds(10), logger: Logger) {
        self.group = group
        self.timeout = timeout
        self.logger = logger
        var configuration = consumer
        configuration.groupID = "\(group).dlq-audit"
        configuration.properties = configuration.properties.merging(
            KafkaProperties(["group.id": configuration.groupID]))
        configuration.commitOnRevoke = false
        self.configuration = configuration
    }

    struct Sent: Sendable {
        let message: KafkaMessage
        let partition: KafkaTopicPartition
        let offset: Int64
    }

    /// The indices of `letters` that are not in their DLQ as marked; those that could not
    /// be checked (the DLQ unreachable) count as missing: a second letter beats a lost one.
    func missing(_ letters: [Sent]) async -> Set<Int> {
        guard !letters.isEmpty else { return [] }
        do {
            let consumer = try reader ?? KafkaConsumer(configuration: configuration, logger: logger)
            reader = consumer
            return try await missing(letters, reading: consumer)
        } catch {
            logger.warning("dead letters not checked in their DLQ: sent again", metadata: ["error": "\(error)"])
            return Set(letters.indices)
        }
    }

    func close() async {
        await reader?.close()
        reader = nil
    }

    private func missing(_ letters: [Sent], reading consumer: KafkaConsumer) async throws -> Set<Int> {
        let byPartition = Dictionary(grouping: letters.indices) { letters[$0].partition }
        let marks = try await consumer.watermarks(Array(byPartition.keys))
        var missing = Set<Int>()
        var toRead: [KafkaTopicPartition: [Int64: [Int]]] = [:]
        for (partition, indices) in byPartition {
            guard let (low, high) = marks[partition] else {
                missing.formUnion(indices)
                continue
            }
            for index in indices {
                let offset = letters[index].offset
                if offset >= high {
                    missing.insert(index)  // the partition ends before it: lost
                } else if offset >= low {
                    toRead[partition, default: [:]][offset, default: []].append(index)
                }  // below the low watermark: deleted by retention, so it was there
            }
        }
        guard !toRead.isEmpty else { return missing }
        try await consumer.assign(toRead.mapValues { $0.keys.min()! })
        var unread = toRead
        let deadline = ContinuousClock.now + timeout
        while !unread.isEmpty, ContinuousClock.now < deadline {
            for record in try await consumer.poll(maxMessages: 500, timeoutMilliseconds: 200).messages {
                guard let wanted = unread[record.topicPartition] else { continue }
                for index in wanted[record.offset] ?? [] where !Self.isLetter(record, of: letters[index].message, group)
                {
                    missing.insert(index)
                }
                // Offsets passed without a record (a gap: compaction, a transaction's marker) are not there.
                for (offset, indices) in wanted where offset < record.offset { missing.formUnion(indices) }
                let left = wanted.filter { $0.key > record.offset }
                unread[record.topicPartition] = left.isEmpty ? nil : left
            }
        }
        // Not read in time: not confirmed.
        for offsets in unread.values { missing.formUnion(offsets.values.joined()) }
        return missing
    }

    /// Whether a DLQ record is `group`'s letter of `message`.
    static func isLetter(_ record: KafkaMessage, of message: KafkaMessage, _ group: String) -> Bool {
        func header(_ name: String) -> String? {
            record.header(name)?.value.map { String(decoding: $0, as: UTF8.self) }
        }
        return header(DeadLetter.Header.originalTopic) == message.topic
            && header(DeadLetter.Header.originalPartition) == String(message.partition)
            && header(DeadLetter.Header.originalOffset) == String(message.offset)
            && header(DeadLetter.Header.consumerGroup) == group
    }
}
