import Kafka

/// Where each assigned partition stands: the next offset to process, and whether it is
/// paused for a retry. Pure bookkeeping, no I/O, so it is tested on its own.
struct PartitionStates {
    struct Entry {
        /// The next offset to process; nil until the first message is seen.
        var position: Int64?
        var attempts = 0
        var pausedUntil: ContinuousClock.Instant?
    }

    private(set) var entries: [KafkaTopicPartition: Entry] = [:]

    var assigned: Set<KafkaTopicPartition> { Set(entries.keys) }
    var paused: Set<KafkaTopicPartition> { Set(entries.filter { $0.value.pausedUntil != nil }.keys) }

    func isAssigned(_ partition: KafkaTopicPartition) -> Bool { entries[partition] != nil }

    mutating func assign(_ partitions: [KafkaTopicPartition]) {
        for partition in partitions { entries[partition] = Entry() }
    }

    mutating func revoke(_ partitions: [KafkaTopicPartition]) {
        for partition in partitions { entries[partition] = nil }
    }

    /// The polled messages grouped by partition, in order, without those of paused
    /// partitions (their seek fetches them again) or those already processed.
    mutating func batches(of messages: [KafkaMessage]) -> [(KafkaTopicPartition, [KafkaMessage])] {
        partitionIndices(of: messages).map { ($0.0, $0.1.map { messages[$0] }) }
    }

    /// `batches(of:)` as indices into `messages`, which the loop hands on without copying;
    /// the messages of `skipped` partitions are left out too.
    mutating func partitionIndices(
        of messages: [KafkaMessage], skipping skipped: Set<KafkaTopicPartition> = []
    ) -> [(KafkaTopicPartition, [Int])] {
        var order: [KafkaTopicPartition] = []
        var groups: [KafkaTopicPartition: [Int]] = [:]
        // Messages come in runs of one partition: look it up once per run.
        var run: (partition: KafkaTopicPartition, indices: [Int], skipped: Bool, position: Int64?)?
        func flush() {
            guard let current = run, !current.skipped, !current.indices.isEmpty else { return }
            if groups[current.partition] == nil { order.append(current.partition) }
            groups[current.partition, default: []].append(contentsOf: current.indices)
        }
        for (index, message) in messages.enumerated() {
            if run == nil || run!.partition.partition != message.partition || run!.partition.topic != message.topic {
                flush()
                let partition = message.topicPartition
                let entry = entries[partition]
                let skip = entry == nil || entry!.pausedUntil != nil || skipped.contains(partition)
                run = (partition, [], skip, entry?.position)
            }
            if run!.skipped { continue }
            if let position = run!.position {
                if message.offset < position { continue }
            } else {
                run!.position = message.offset
                entries[run!.partition]?.position = message.offset
            }
            run!.indices.append(index)
        }
        flush()
        return order.map { ($0, groups[$0]!) }
    }

    /// A message was fetched but dropped (during a long batch): its offset is where to
    /// start again if the partition had no position yet.
    mutating func noteSeen(_ partition: KafkaTopicPartition, offset: Int64) {
        guard var entry = entries[partition], entry.position == nil else { return }
        entry.position = offset
        entries[partition] = entry
    }

    mutating func succeeded(_ partition: KafkaTopicPartition, next: Int64) {
        entries[partition]?.position = next
        entries[partition]?.attempts = 0
    }

    /// Returns the attempt number (0 for the first failure) and rewinds the position.
    mutating func failed(_ partition: KafkaTopicPartition, from offset: Int64) -> Int {
        guard var entry = entries[partition] else { return 0 }
        let attempt = entry.attempts
        entry.attempts += 1
        entry.position = offset
        entries[partition] = entry
        return attempt
    }

    mutating func pause(_ partition: KafkaTopicPartition, until instant: ContinuousClock.Instant) {
        entries[partition]?.pausedUntil = instant
    }

    /// Partitions whose pause has ended; they are marked resumed.
    mutating func dueForResume(at now: ContinuousClock.Instant) -> [KafkaTopicPartition] {
        let due = entries.filter { $0.value.pausedUntil.map { $0 <= now } ?? false }.keys.sorted()
        for partition in due { entries[partition]?.pausedUntil = nil }
        return due
    }

    func positions(of partitions: Set<KafkaTopicPartition>) -> [KafkaTopicPartition: Int64] {
        var result: [KafkaTopicPartition: Int64] = [:]
        for partition in partitions {
            if let position = entries[partition]?.position { result[partition] = position }
        }
        return result
    }
}
