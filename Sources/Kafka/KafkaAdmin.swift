import CRdKafka
import Logging

/// Cluster administration: topics and consumer-group offsets. Each call blocks on a thread
/// of its own until the broker answers or the timeout passes.
///
/// Against librdkafka 2.0's mock cluster, CreateTopics times out (create topics in the
/// broker process instead) and AlterConsumerGroupOffsets is refused for any group that has
/// had members; List/DescribeConsumerGroups are not offered here at all, since calling them
/// against the mock leaves the client unable to shut down.
public final class KafkaAdmin: Sendable {
    private let handle: KafkaHandle
    public let timeoutMilliseconds: Int

    public init(
        bootstrapServers: String, properties: KafkaProperties = KafkaProperties(), timeoutMilliseconds: Int = 10_000,
        logger: Logger = Logger(label: "prewarm.kafka.admin")
    ) throws {
        let all = KafkaProperties(["bootstrap.servers": bootstrapServers]).merging(properties)
        self.handle = try KafkaHandle(kind: .producer, properties: all, logger: logger)
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// Creates topics, each with its topic configs (`max.message.bytes`, say); one that
    /// already exists is not an error. Returns the names created.
    @discardableResult
    public func createTopics(
        _ topics: [(name: String, partitions: Int, replicationFactor: Int, configs: [String: String])]
    ) async throws -> [String] {
        try await KafkaBlocking.run { [handle, timeoutMilliseconds] in
            var errstr = [CChar](repeating: 0, count: 512)
            var newTopics: [OpaquePointer?] = []
            defer { newTopics.forEach { rd_kafka_NewTopic_destroy($0) } }
            for topic in topics {
                guard
                    let newTopic = rd_kafka_NewTopic_new(
                        topic.name, Int32(topic.partitions), Int32(topic.replicationFactor), &errstr, errstr.count)
                else {
                    throw KafkaError(
                        code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, operation: "create topic \(topic.name)",
                        message: String(errorBuffer: errstr))
                }
                for (name, value) in topic.configs.sorted(by: { $0.key < $1.key }) {
                    try KafkaError.check(
                        rd_kafka_NewTopic_set_config(newTopic, name, value), "config \(name) of topic \(topic.name)")
                }
                newTopics.append(newTopic)
            }
            return try Self.request(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeoutMilliseconds) { options, queue in
                rd_kafka_CreateTopics(handle.pointer, &newTopics, newTopics.count, options, queue)
            } read: { event in
                var count = 0
                let results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count)
                var created: [String] = []
                for index in 0..<count {
                    let result = results![index]
                    let name = String(cString: rd_kafka_topic_result_name(result))
                    let error = rd_kafka_topic_result_error(result)
                    if error == RD_KAFKA_RESP_ERR_NO_ERROR {
                        created.append(name)
                    } else if error != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                        let message = rd_kafka_topic_result_error_string(result).map { String(cString: $0) }
                        throw KafkaError(error, operation: "create topic \(name)", message: message)
                    }
                }
                return created
            }
        }
    }

    /// Partition count of each named topic that exists.
    public func partitionCounts(_ topics: [String]) async throws -> [String: Int] {
        try await KafkaBlocking.run { [handle, timeoutMilliseconds] in
            try handle.checkOpen("metadata")
            return try KafkaMetadata.partitionCounts(handle, topics: topics, timeoutMilliseconds)
        }
    }

    /// How many brokers the cluster has.
    public func brokerCount() async throws -> Int {
        try await KafkaBlocking.run { [handle, timeoutMilliseconds] in
            try handle.checkOpen("metadata")
            return try KafkaMetadata.brokerCount(handle, timeoutMilliseconds)
        }
    }

    /// Low and high watermarks of a partition.
    public func watermarks(_ partition: KafkaTopicPartition) async throws -> (low: Int64, high: Int64) {
        try await watermarks([partition])[partition]!
    }

    /// Low and high watermarks of each partition, fetched on one thread.
    public func watermarks(_ partitions: [KafkaTopicPartition]) async throws
        -> [KafkaTopicPartition: (low: Int64, high: Int64)]
    {
        try await KafkaBlocking.run { [handle, timeoutMilliseconds] in
            try handle.checkOpen("metadata")
            return try KafkaMetadata.watermarks(handle, partitions, timeoutMilliseconds)
        }
    }

    /// The group's committed offsets for `partitions`; `nil` where none is committed.
    public func committedOffsets(group: String, partitions: [KafkaTopicPartition]) async throws
        -> [KafkaTopicPartition: Int64?]
    {
        try await KafkaBlocking.run { [handle, timeoutMilliseconds] in
            let list = TopicPartitionList.make(partitions)
            defer { rd_kafka_topic_partition_list_destroy(list) }
            var request: OpaquePointer? = rd_kafka_ListConsumerGroupOffsets_new(group, list)
            defer { rd_kafka_ListConsumerGroupOffsets_destroy(request) }
            return try Self.request(handle, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeoutMilliseconds) {
                options, queue in
                rd_kafka_ListConsumerGroupOffsets(handle.pointer, &request, 1, options, queue)
            } read: { event in
                var count = 0
                let groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
                    rd_kafka_event_ListConsumerGroupOffsets_result(event), &count)
                return try Self.groupOffsets(groups, count, "list offsets of group \(group)")
            }
        }
    }

    /// Sets the group's committed offsets. Kafka refuses this while the group has members.
    public func alterCommittedOffsets(group: String, offsets: [KafkaTopicPartition: Int64]) async throws {
        try await KafkaBlocking.run { [handle, timeoutMilliseconds] in
            let list = TopicPartitionList.make(offsets.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            defer { rd_kafka_topic_partition_list_destroy(list) }
            var request: OpaquePointer? = rd_kafka_AlterConsumerGroupOffsets_new(group, list)
            defer { rd_kafka_AlterConsumerGroupOffsets_destroy(request) }
            _ = try Self.request(handle, RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS, timeoutMilliseconds) {
                options, queue in
                rd_kafka_AlterConsumerGroupOffsets(handle.pointer, &request, 1, options, queue)
            } read: { event in
                var count = 0
                let groups = rd_kafka_AlterConsumerGroupOffsets_result_groups(
                    rd_kafka_event_AlterConsumerGroupOffsets_result(event), &count)
                return try Self.groupOffsets(groups, count, "alter offsets of group \(group)")
            }
        } as Void
    }

    public func close() async {
        await KafkaBlocking.run { [handle] in handle.destroy() }
    }

    private static func groupOffsets(_ groups: UnsafeMutablePointer<OpaquePointer?>?, _ count: Int, _ operation: String)
        throws
        -> [KafkaTopicPartition: Int64?]
    {
        var offsets: [KafkaTopicPartition: Int64?] = [:]
        for index in 0..<count {
            let group = groups![index]
            if let error = rd_kafka_group_result_error(group) {
                let code = rd_kafka_error_code(error)
                throw KafkaError(code, operation: operation, message: String(cString: rd_kafka_error_string(error)))
            }
            let list = rd_kafka_group_result_partitions(group)
            if let list { try TopicPartitionList.check(list, operation) }
            for entry in TopicPartitionList.entries(list) {
                offsets[entry.partition] = entry.offset >= 0 ? entry.offset : nil
            }
        }
        return offsets
    }

    /// Sends one admin request on a temporary queue and reads its result event.
    private static func request<T>(
        _ handle: KafkaHandle, _ operation: rd_kafka_admin_op_t, _ timeoutMilliseconds: Int,
        send: (OpaquePointer?, OpaquePointer?) -> Void, read: (OpaquePointer) throws -> T
    ) throws -> T {
        try handle.checkOpen("admin request")
        let queue = rd_kafka_queue_new(handle.pointer)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(handle.pointer, operation)
        defer { rd_kafka_AdminOptions_destroy(options) }
        var errstr = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_AdminOptions_set_request_timeout(options, Int32(timeoutMilliseconds), &errstr, errstr.count)
        send(options, queue)
        guard let event = rd_kafka_queue_poll(queue, Int32(timeoutMilliseconds + 1000)) else {
            throw KafkaError(RD_KAFKA_RESP_ERR__TIMED_OUT, operation: "admin request")
        }
        defer { rd_kafka_event_destroy(event) }
        let error = rd_kafka_event_error(event)
        if error != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(
                error, operation: "admin request",
                message: rd_kafka_event_error_string(event).map { String(cString: $0) })
        }
        return try read(event)
    }
}
