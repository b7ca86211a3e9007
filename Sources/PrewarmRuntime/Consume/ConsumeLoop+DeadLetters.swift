import CoreMetrics
import Kafka
import Logging
import PrewarmConfiguration
import ServiceLifecycle
import Synchronization

/// Dead letters: a bad message sent to its topic's DLQ once per group (marked in Redis; kept whole in PostgreSQL when the
/// DLQ refuses its size), its offset remembered in the process until committed.
extension ConsumeLoop {
    func deadLetter(_ letters: [DeadLetter], topic: String) async -> Outcome {
        let fresh = lettered.withLock { sent in
            letters.filter { !(sent[$0.message.topicPartition]?.contains($0.message.offset) ?? false) }
        }
        guard !fresh.isEmpty else { return .done }
        // Handled again after this group sent their letters (a rebalance moved the partition
        // before the offset was committed, or a replay): not sent twice.
        let marked = await deadLetterMarks?.alreadySent(fresh.map(\.message), logger: logger) ?? [:]
        let already = Set(marked.keys).subtracting(await lostByTheDeadLetterQueue(fresh, marked: marked, dlq: topic))
        for index in already.sorted() {
            let letter = fresh[index]
            lettered.withLock { $0[letter.message.topicPartition, default: []].insert(letter.message.offset) }
            logger.info(
                "message dead-lettered before by this group: not sent again",
                metadata: [
                    "topic": "\(letter.message.topic)", "partition": "\(letter.message.partition)",
                    "offset": "\(letter.message.offset)", "error_class": "\(letter.errorClass)",
                ])
        }
        let letters =
            already.isEmpty ? fresh : fresh.enumerated().filter { !already.contains($0.offset) }.map(\.element)
        guard !letters.isEmpty else { return .done }
        let outcome = await send(letters, topic: topic)
        await deadLetterMarks?.mark(
            outcome.sent.map {
                ($0.message, DeadLetterMarks.Position(partition: $0.report.partition, offset: $0.report.offset))
            },
            logger: logger)
        if let outage = outcome.outage { return .retry(outage) }
        return .done
    }

    /// Sends letters to the DLQ (a letter refused as too large kept whole, a reference sent in
    /// its place); what was sent, and the outage that kept the rest.
    private func send(_ fresh: [DeadLetter], topic: String) async -> (
        sent: [(message: KafkaMessage, report: KafkaDeliveryReport)], outage: (any Error)?
    ) {
        let reports: [Result<KafkaDeliveryReport, KafkaError>]
        do {
            reports = try await deadLetters.sendEach(
                fresh.map { $0.producerMessage(topic: topic, group: configuration.groupID) })
        } catch {
            return ([], error)
        }
        var outage: (any Error)?
        var sent: [(message: KafkaMessage, report: KafkaDeliveryReport)] = []
        for (letter, report) in zip(fresh, reports) {
            switch report {
            case .success(let report):
                noteLettered(letter, dlq: topic, kept: nil)
                sent.append((letter.message, report))
            case .failure(let error) where error.isRefusedMessage:
                // Too large (or refused) as it is: kept whole elsewhere, a reference in the DLQ.
                do {
                    let reference = try await keepWhole(letter, error: error)
                    let report = try await deadLetters.send(
                        letter.referenceMessage(topic: topic, group: configuration.groupID, reference: reference))
                    noteLettered(letter, dlq: topic, kept: reference)
                    sent.append((letter.message, report))
                } catch {
                    outage = error  // PostgreSQL or the DLQ unreachable: keep it, try again
                }
            case .failure(let error):
                outage = error  // the DLQ is unreachable: keep the messages, try again
            }
        }
        return (sent, outage)
    }

    /// The indices of marked letters that are not in the DLQ where it acknowledged them (the
    /// broker lost them: `DeadLetterAudit`): sent again, with an alert, since the broker lost
    /// what it had acknowledged.
    private func lostByTheDeadLetterQueue(
        _ letters: [DeadLetter], marked: [Int: DeadLetterMarks.Position?], dlq topic: String
    ) async -> Set<Int> {
        let checked = marked.compactMap { index, position in position.map { (index, $0) } }
        guard !checked.isEmpty else { return [] }
        let missing = await deadLetterAudit.missing(
            checked.map { index, position in
                DeadLetterAudit.Sent(
                    message: letters[index].message, partition: KafkaTopicPartition(topic, position.partition),
                    offset: position.offset)
            })
        let lost = missing.sorted().map { checked[$0] }
        for (index, position) in lost {
            let message = letters[index].message
            logger.error(
                "dead letter not in its DLQ where it was acknowledged: sent again",
                metadata: [
                    "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
                    "dlq": "\(topic)", "dlq_partition": "\(position.partition)", "dlq_offset": "\(position.offset)",
                ])
        }
        if let first = lost.first.map({ letters[$0.0].message }) {
            alerts?.raise(
                "dead-letter-lost-by-broker",
                "\(lost.count) dead letter(s) of group \(configuration.groupID) acknowledged by \(topic) are no longer "
                    + "there (one: \(first.topicPartition) at \(first.offset)); sent again. The broker lost records it "
                    + "had acknowledged: check its durability settings",
                details: ["group": configuration.groupID, "topic": topic])
        }
        return Set(lost.map(\.0))
    }

    /// Keeps a letter the DLQ refused in PostgreSQL; without PostgreSQL (a worker that does not
    /// use it), its value cannot be kept: the reference says so and an alert is raised.
    func keepWhole(_ letter: DeadLetter, error: KafkaError) async throws -> String {
        if let deadLetterStore {
            return try await deadLetterStore.keep(letter, group: configuration.groupID)
        }
        alerts?.raise(
            "dead-letter-not-kept",
            "a dead letter of \(letter.message.topicPartition) at \(letter.message.offset) "
                + "(\(letter.message.value.count) bytes) was refused by its DLQ (\(error.name)) and this worker has no "
                + "PostgreSQL to keep it: only its reference is in the DLQ",
            details: ["group": configuration.groupID, "topic": letter.message.topic])
        return "none"
    }

    func noteLettered(_ letter: DeadLetter, dlq topic: String, kept reference: String?) {
        lettered.withLock { $0[letter.message.topicPartition, default: []].insert(letter.message.offset) }
        var metadata: Logger.Metadata = [
            "topic": "\(letter.message.topic)", "partition": "\(letter.message.partition)",
            "offset": "\(letter.message.offset)", "dlq": "\(topic)", "error_class": "\(letter.errorClass)",
            "error": "\(letter.errorMessage)",
        ]
        if let reference {
            metadata["kept_in"] = "\(reference)"
            metadata["bytes"] = "\(letter.message.value.count)"
        }
        logger.error("message dead-lettered", metadata: metadata)
        statistics.deadLettered(letter.message.topic, errorClass: letter.errorClass)
    }

    /// Forgets the letters of offsets now committed past (or of partitions no longer owned).
    func forgetLettered(committed: [KafkaTopicPartition: Int64], owned: Set<KafkaTopicPartition>) {
        lettered.withLock { sent in
            for partition in Array(sent.keys) {
                if !owned.contains(partition) {
                    sent[partition] = nil
                } else if let next = committed[partition] {
                    sent[partition] = sent[partition]?.filter { $0 >= next }
                    if sent[partition]?.isEmpty == true { sent[partition] = nil }
                }
            }
        }
    }
}
