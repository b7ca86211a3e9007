import CRdKafka

/// Broker metadata look-ups shared by the consumer and admin clients. Blocking: call them
/// on a thread of the caller's own.
enum KafkaMetadata {
    static func watermarks(_ handle: KafkaHandle, _ partition: KafkaTopicPartition, _ timeoutMilliseconds: Int) throws
        -> (low: Int64, high: Int64)
    {
        var low: Int64 = -1
        var high: Int64 = -1
        try KafkaError.check(
            rd_kafka_query_watermark_offsets(
                handle.pointer, partition.topic, partition.partition, &low, &high, Int32(timeoutMilliseconds)),
            "watermarks of \(partition)")
        return (low, high)
    }

    /// Watermarks of several partitions in one blocking call (one thread, not one per partition).
    static func watermarks(_ handle: KafkaHandle, _ partitions: [KafkaTopicPartition], _ timeoutMilliseconds: Int)
        throws
        -> [KafkaTopicPartition: (low: Int64, high: Int64)]
    {
        var result: [KafkaTopicPartition: (low: Int64, high: Int64)] = [:]
        for partition in partitions { result[partition] = try watermarks(handle, partition, timeoutMilliseconds) }
        return result
    }

    /// How many brokers the cluster reports.
    static func brokerCount(_ handle: KafkaHandle, _ timeoutMilliseconds: Int) throws -> Int {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        try KafkaError.check(
            rd_kafka_metadata(handle.pointer, 0, nil, &metadata, Int32(timeoutMilliseconds)), "metadata")
        guard let metadata else { return 0 }
        defer { rd_kafka_metadata_destroy(metadata) }
        return Int(metadata.pointee.broker_cnt)
    }

    /// Partition count per topic, for the named topics (or every topic when empty).
    static func partitionCounts(_ handle: KafkaHandle, topics: [String], _ timeoutMilliseconds: Int) throws -> [String:
        Int]
    {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        try KafkaError.check(
            rd_kafka_metadata(handle.pointer, 1, nil, &metadata, Int32(timeoutMilliseconds)), "metadata")
        guard let metadata else { return [:] }
        defer { rd_kafka_metadata_destroy(metadata) }
        var counts: [String: Int] = [:]
        for index in 0..<Int(metadata.pointee.topic_cnt) {
            let topic = metadata.pointee.topics[index]
            let name = String(cString: topic.topic)
            guard topics.isEmpty || topics.contains(name), topic.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
            counts[name] = Int(topic.partition_cnt)
        }
        return counts
    }
}
