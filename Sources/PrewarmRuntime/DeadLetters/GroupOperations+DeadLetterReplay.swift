import Foundation
import Kafka
import PrewarmConfiguration

extension GroupOperations {
    /// Sends dead letters back to the topic they came from, after a fix. Progress is the
    /// committed offset of the group `replayGroup`, so a second run does not resend what the
    /// first did. Stops at `limit` messages or when the DLQ has nothing more (idle for
    /// `idle`). A reference letter (its message kept whole in PostgreSQL) is restored from
    /// `store`. Returns how many went where.
    public func replayDeadLetters(
        from deadLetterTopic: String, limit: Int? = nil, replayGroup: String = "prewarmctl-dlq-replay",
        idle: Duration = .seconds(2), joinTimeout: Duration = .seconds(60), store: DeadLetterStore? = nil
    ) async throws -> ReplayReport {
        // A message kept in PostgreSQL may be larger than a producer sends by default: it goes
        // back as large as it came (its topic's broker decides).
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: bootstrapServers,
                properties: KafkaProperties(["message.max.bytes": "100000000"]).merging(properties)),
            logger: logger)
        return try await using(producer) { producer in
            try await using(try consumer(group: replayGroup)) { consumer in
                try await replay(consumer, producer, deadLetterTopic, limit, idle, joinTimeout, store)
            }
        }
    }

    private func replay(
        _ consumer: KafkaConsumer, _ producer: KafkaProducer, _ deadLetterTopic: String, _ limit: Int?,
        _ idle: Duration, _ joinTimeout: Duration, _ store: DeadLetterStore?
    ) async throws -> ReplayReport {
        try await consumer.subscribe([deadLetterTopic])
        var report = ReplayReport()
        let joinDeadline = ContinuousClock.now + joinTimeout
        var lastMessage = ContinuousClock.now
        var joined = false
        while limit.map({ report.total < $0 }) ?? true {
            let poll = try await consumer.poll(maxMessages: 500, timeoutMilliseconds: 200)
            if !joined {
                joined = !(try await consumer.assignment().isEmpty)
                if !joined && ContinuousClock.now > joinDeadline {
                    throw TimedOut("joining a group to read \(deadLetterTopic)", after: joinTimeout)
                }
                lastMessage = .now
            }
            var batch = poll.messages
            if let limit { batch = Array(batch.prefix(limit - report.total)) }
            if batch.isEmpty {
                if joined && ContinuousClock.now - lastMessage > idle { break }
                continue
            }
            lastMessage = .now
            var outgoing: [KafkaProducerMessage] = []
            for letter in batch { outgoing.append(try await Self.original(of: letter, store: store)) }
            try await producer.send(outgoing)
            try await consumer.commit(batch)
            for message in outgoing { report.replayed[message.topic, default: 0] += 1 }
        }
        logger.notice(
            "dead letters replayed", metadata: ["dlq": "\(deadLetterTopic)", "replayed": "\(report.replayed)"])
        return report
    }

    /// The message as it was before it was dead-lettered, marked with where it was; a reference
    /// letter's message read back from `store`.
    static func original(of letter: KafkaMessage, store: DeadLetterStore?) async throws -> KafkaProducerMessage {
        guard let reference = letter.header(DeadLetterStore.referenceHeader)?.stringValue else {
            return original(of: letter)
        }
        guard let store else {
            throw UsageError(
                "\(letter.topic) holds a letter kept in PostgreSQL (\(reference)): set PREWARM_POSTGRES_URL to replay it"
            )
        }
        guard var message = try await store.message(reference) else {
            throw UsageError("\(reference), named by \(letter.topic)/\(letter.partition)/\(letter.offset), is gone")
        }
        message.headers.removeAll { DeadLetter.Header.all.contains($0.name) }
        message.headers.append(
            KafkaHeader("prewarm-replayed-from", "\(letter.topic)/\(letter.partition)/\(letter.offset)"))
        return message
    }

    /// The message as it was before it was dead-lettered, marked with where it was.
    static func original(of letter: KafkaMessage) -> KafkaProducerMessage {
        let topic =
            letter.header(DeadLetter.Header.originalTopic)?.stringValue
            ?? TopicSpec.sourceTopic(ofDeadLetterTopic: letter.topic) ?? letter.topic
        var headers = letter.headers.filter { !DeadLetter.Header.all.contains($0.name) }
        headers.append(KafkaHeader("prewarm-replayed-from", "\(letter.topic)/\(letter.partition)/\(letter.offset)"))
        return KafkaProducerMessage(topic: topic, key: letter.key, value: letter.value, headers: headers)
    }
}
