import BlockingIO
import CRdKafka
import Logging

/// A consumer in a group. Every call into librdkafka runs on the consumer's own thread
/// (polling blocks, and librdkafka wants one thread to poll a consumer), so polls,
/// commits and pauses happen in the order they are called.
///
/// Offsets are never committed on their own: call `commit(_:)` with what has been
/// processed. Rebalances are handled inside `poll` (eager assign/revoke) and reported in
/// its result; with `commitOnRevoke`, offsets stored by `commit` are committed again
/// before partitions are given up.
public final class KafkaConsumer: Sendable {
    public let configuration: KafkaConsumerConfiguration
    private let handle: KafkaHandle
    private let thread: IOThread

    public init(configuration: KafkaConsumerConfiguration, logger: Logger = Logger(label: "prewarm.kafka.consumer"))
        throws
    {
        self.configuration = configuration
        self.handle = try KafkaHandle(
            kind: .consumer, properties: configuration.properties, logger: logger,
            commitOnRevoke: configuration.commitOnRevoke
        ) { conf in
            rd_kafka_conf_set_rebalance_cb(conf, kafkaRebalanceCallback)
        }
        // Route the main queue (logs, errors) into the consumer queue served by poll.
        rd_kafka_poll_set_consumer(handle.pointer)
        self.thread = IOThread(name: "kafka-consumer")
    }

    /// Joins the group for `topics`; partitions arrive through `poll`'s rebalance events.
    public func subscribe(_ topics: [String]) async throws {
        try await thread.run { [handle] in
            let list = TopicPartitionList.make(topics.map { KafkaTopicPartition($0, RD_KAFKA_PARTITION_UA) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            try KafkaError.check(rd_kafka_subscribe(handle.pointer, list), "subscribe")
        }
    }

    /// Reads exactly these partitions from these offsets, outside any group rebalancing
    /// (for tools; workers use `subscribe`). Replaces the previous assignment.
    public func assign(_ offsets: [KafkaTopicPartition: Int64]) async throws {
        try await thread.run { [handle] in
            let list = TopicPartitionList.make(offsets.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            try KafkaError.check(rd_kafka_assign(handle.pointer, list), "assign")
        }
    }

    /// Waits up to `timeoutMilliseconds` for the first message, then takes whatever else is
    /// already fetched, up to `maxMessages`.
    public func poll(maxMessages: Int, timeoutMilliseconds: Int) async throws -> KafkaPollResult {
        try await thread.run { [handle] in
            var messages: [KafkaMessage] = []
            var errors: [KafkaError] = []
            var wait = Int32(timeoutMilliseconds)
            var topicNames = TopicNames()
            while messages.count < maxMessages, let raw = rd_kafka_consumer_poll(handle.pointer, wait) {
                defer { rd_kafka_message_destroy(raw) }
                wait = 0
                let error = raw.pointee.err
                if error == RD_KAFKA_RESP_ERR_NO_ERROR {
                    messages.append(KafkaMessage(copying: raw, topic: topicNames.name(of: raw.pointee.rkt)))
                } else if error != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    let failure = KafkaError(error, operation: "consume", message: raw.pointee.errorText)
                    if rd_kafka_fatal_error(handle.pointer, nil, 0) != RD_KAFKA_RESP_ERR_NO_ERROR {
                        throw KafkaError(
                            code: failure.code, operation: "consume", message: failure.message, isFatal: true)
                    }
                    errors.append(failure)
                }
            }
            let events = handle.context.takeUnretainedValue().rebalanceEvents.withLock { events in
                defer { events.removeAll() }
                return events
            }
            return KafkaPollResult(messages: messages, rebalanceEvents: events, errors: errors)
        }
    }

    /// Commits, synchronously, the offsets after these processed messages (the highest per
    /// partition, plus one) and stores them so a revoke or close commits them again.
    public func commit(_ processed: [KafkaMessage]) async throws {
        var next: [KafkaTopicPartition: Int64] = [:]
        for message in processed {
            next[message.topicPartition] = max(next[message.topicPartition] ?? 0, message.offset + 1)
        }
        try await commit(offsets: next)
    }

    /// Commits `offsets` (the next offset to read, per partition) and waits for the broker.
    public func commit(offsets: [KafkaTopicPartition: Int64]) async throws {
        if offsets.isEmpty { return }
        try await thread.run { [handle] in
            let list = TopicPartitionList.make(offsets.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            // Stored offsets are what a revoke commits; a partition no longer assigned refuses.
            _ = rd_kafka_offsets_store(handle.pointer, list)
            try KafkaError.check(rd_kafka_commit(handle.pointer, list, 0), "commit")
            try TopicPartitionList.check(list, "commit")
        }
    }

    /// Stops fetching from `partitions` (they stay assigned) until `resume`.
    public func pause(_ partitions: [KafkaTopicPartition]) async throws {
        try await thread.run { [handle] in
            let list = TopicPartitionList.make(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            try KafkaError.check(rd_kafka_pause_partitions(handle.pointer, list), "pause")
        }
    }

    public func resume(_ partitions: [KafkaTopicPartition]) async throws {
        try await thread.run { [handle] in
            let list = TopicPartitionList.make(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            try KafkaError.check(rd_kafka_resume_partitions(handle.pointer, list), "resume")
        }
    }

    /// Moves the fetch position, e.g. back to the first message of a batch that failed.
    public func seek(_ offsets: [KafkaTopicPartition: Int64], timeoutMilliseconds: Int = 5000) async throws {
        try await thread.run { [handle] in
            let list = TopicPartitionList.make(offsets.map { ($0.key, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            if let error = rd_kafka_seek_partitions(handle.pointer, list, Int32(timeoutMilliseconds)) {
                throw KafkaError(consuming: error, operation: "seek")
            }
            try TopicPartitionList.check(list, "seek")
        }
    }

    /// The partitions this consumer owns now.
    public func assignment() async throws -> [KafkaTopicPartition] {
        try await thread.run { [handle] in
            var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
            try KafkaError.check(rd_kafka_assignment(handle.pointer, &list), "assignment")
            defer { if let list { rd_kafka_topic_partition_list_destroy(list) } }
            return TopicPartitionList.partitions(list).sorted()
        }
    }

    /// The group's committed offsets for `partitions`; `nil` where nothing is committed.
    public func committed(_ partitions: [KafkaTopicPartition], timeoutMilliseconds: Int = 5000) async throws
        -> [KafkaTopicPartition: Int64?]
    {
        try await thread.run { [handle] in
            let list = TopicPartitionList.make(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            try KafkaError.check(rd_kafka_committed(handle.pointer, list, Int32(timeoutMilliseconds)), "committed")
            var result: [KafkaTopicPartition: Int64?] = [:]
            for entry in TopicPartitionList.entries(list) {
                result[entry.partition] = entry.offset >= 0 ? entry.offset : nil
            }
            return result
        }
    }

    /// Low and high watermarks of each partition, in one job on the consumer's thread.
    public func watermarks(_ partitions: [KafkaTopicPartition], timeoutMilliseconds: Int = 5000) async throws
        -> [KafkaTopicPartition: (low: Int64, high: Int64)]
    {
        try await thread.run { [handle] in try KafkaMetadata.watermarks(handle, partitions, timeoutMilliseconds) }
    }

    /// Low and high watermarks of a partition, asked of its leader. Lag = high - committed.
    public func watermarks(_ partition: KafkaTopicPartition, timeoutMilliseconds: Int = 5000) async throws
        -> (low: Int64, high: Int64)
    {
        try await thread.run { [handle] in try KafkaMetadata.watermarks(handle, partition, timeoutMilliseconds) }
    }

    /// For each partition, the earliest offset whose timestamp is at or after `milliseconds`
    /// since the epoch; `nil` where no message is that recent (the end of the partition).
    public func offsets(
        atOrAfter milliseconds: Int64, _ partitions: [KafkaTopicPartition], timeoutMilliseconds: Int = 10_000
    ) async throws -> [KafkaTopicPartition: Int64?] {
        try await thread.run { [handle] in
            let list = TopicPartitionList.make(partitions.map { ($0, milliseconds) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            try KafkaError.check(
                rd_kafka_offsets_for_times(handle.pointer, list, Int32(timeoutMilliseconds)), "offsets for times")
            try TopicPartitionList.check(list, "offsets for times")
            var result: [KafkaTopicPartition: Int64?] = [:]
            for entry in TopicPartitionList.entries(list) {
                result[entry.partition] = entry.offset >= 0 ? entry.offset : nil
            }
            return result
        }
    }

    /// High watermarks as last seen in fetch responses: no broker round trip, so cheap
    /// enough for lag metrics after every commit. Partitions not fetched yet are left out.
    public func cachedHighWatermarks(_ partitions: [KafkaTopicPartition]) async throws -> [KafkaTopicPartition: Int64] {
        try await thread.run { [handle] in
            var result: [KafkaTopicPartition: Int64] = [:]
            for partition in partitions {
                var low: Int64 = -1
                var high: Int64 = -1
                let error = rd_kafka_get_watermark_offsets(
                    handle.pointer, partition.topic, partition.partition, &low, &high)
                if error == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 { result[partition] = high }
            }
            return result
        }
    }

    /// Leaves the group (committing stored offsets first if `commitOnRevoke`) and frees the
    /// client. Safe to call once; later calls on this consumer throw.
    public func close() async {
        _ =
            try? await thread.run { [handle] in
                let error = rd_kafka_consumer_close(handle.pointer)
                if error != RD_KAFKA_RESP_ERR_NO_ERROR {
                    handle.context.takeUnretainedValue().logger.warning(
                        "kafka consumer close", metadata: ["error": "\(KafkaError(error, operation: "close"))"])
                }
                handle.destroy()
            } as Void
        await thread.stop()
    }
}

/// Topic names of one poll, so each message does not allocate its own copy.
struct TopicNames {
    private var last: (handle: OpaquePointer, name: String)?

    mutating func name(of topic: OpaquePointer?) -> String {
        guard let topic else { return "" }
        if let last, last.handle == topic { return last.name }
        let name = String(cString: rd_kafka_topic_name(topic))
        last = (topic, name)
        return name
    }
}

extension KafkaMessage {
    init(copying raw: UnsafeMutablePointer<rd_kafka_message_t>, topic: String) {
        let message = raw.pointee
        var headers: [KafkaHeader] = []
        var headerList: OpaquePointer?
        if rd_kafka_message_headers(raw, &headerList) == RD_KAFKA_RESP_ERR_NO_ERROR, let headerList {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(headerList, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                headers.append(KafkaHeader(name.map { String(cString: $0) } ?? "", bytes))
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(raw, &timestampType)
        self.init(
            topic: topic,
            partition: message.partition,
            offset: message.offset,
            key: message.key.map { Array(UnsafeRawBufferPointer(start: $0, count: message.key_len)) },
            value: message.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: message.len)) } ?? [],
            headers: headers,
            timestampMilliseconds: timestampType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : timestamp)
    }
}

extension rd_kafka_message_t {
    /// For an error message, the payload holds librdkafka's text.
    var errorText: String {
        guard let payload, len > 0 else { return String(cString: rd_kafka_err2str(err)) }
        return String(decoding: UnsafeRawBufferPointer(start: payload, count: len), as: UTF8.self)
    }
}

/// Runs inside `rd_kafka_consumer_poll`, on the consumer's thread.
private func kafkaRebalanceCallback(
    _ handle: OpaquePointer?, _ error: rd_kafka_resp_err_t,
    _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, _ opaque: UnsafeMutableRawPointer?
) {
    guard let handle, let opaque else { return }
    let context = Unmanaged<KafkaHandleContext>.fromOpaque(opaque).takeUnretainedValue()
    let changed = TopicPartitionList.partitions(partitions).sorted()
    switch error {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        context.logger.info("kafka partitions assigned", metadata: ["partitions": "\(changed)"])
        rd_kafka_assign(handle, partitions)
        context.rebalanceEvents.withLock { $0.append(.assigned(changed)) }
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        if context.commitOnRevoke {
            // Commit what the application stored as processed, so the next owner does not
            // redo it. Brokers refuse this while the group rebalances (the mock always does);
            // then the next owner replays a few messages, which idempotent handlers absorb.
            let commitError = rd_kafka_commit(handle, nil, 0)
            if commitError != RD_KAFKA_RESP_ERR_NO_ERROR && commitError != RD_KAFKA_RESP_ERR__NO_OFFSET {
                context.logger.info(
                    "kafka commit on revoke refused",
                    metadata: ["error": "\(KafkaError(commitError, operation: "commit"))"])
            }
        }
        context.logger.info("kafka partitions revoked", metadata: ["partitions": "\(changed)"])
        rd_kafka_assign(handle, nil)
        context.rebalanceEvents.withLock { $0.append(.revoked(changed)) }
    default:
        context.logger.error(
            "kafka rebalance error", metadata: ["error": "\(KafkaError(error, operation: "rebalance"))"])
        rd_kafka_assign(handle, nil)
        context.rebalanceEvents.withLock { $0.append(.revoked(changed)) }
    }
}
