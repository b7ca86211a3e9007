import DevBroker
import Kafka
import TestSupport
import Testing

/// Against the dev broker that `make test` runs. Each test makes its own topic and group.
@Suite("Kafka producer and consumer groups on the dev broker", .closesResources)
struct KafkaGroupTests {
    static let fastGroup = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"])

    private func consumer(_ group: String) throws -> KafkaConsumer {
        try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: group, bootstrapServers: try TestEnvironment.kafkaBootstrap, properties: Self.fastGroup))
    }

    private func produce(_ topic: String, _ range: Range<Int>) async throws -> [KafkaDeliveryReport] {
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        let reports = try await producer.send(
            range.map { KafkaProducerMessage(topic: topic, key: "user-\($0 % 97)", value: "message-\($0)") })
        await producer.close()
        return reports
    }

    @Test("two consumers share a group's partitions; a restarted consumer resumes at the committed offsets")
    func groupAndRestart() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 4)
        let group = TestEnvironment.uniqueName("group")
        let reports = try await produce(topic, 0..<2000)
        #expect(reports.count == 2000)

        let first = try consumer(group)
        let second = try consumer(group)
        try await first.subscribe([topic])
        try await second.subscribe([topic])
        var seen: [KafkaConsumer: Set<String>] = [:]
        var assignments: [KafkaConsumer: [KafkaTopicPartition]] = [:]
        let consumers = [first, second]
        // Done when every message was seen and both members own partitions of a settled group.
        try await eventually(timeout: .seconds(60), "both consumers to share the group and read everything") {
            for consumer in consumers {
                let batch = try await consumer.poll(maxMessages: 500, timeoutMilliseconds: 100)
                seen[consumer, default: []].formUnion(batch.messages.map(\.valueString))
                try? await consumer.commit(batch.messages)  // refused during a rebalance: replayed, not lost
                assignments[consumer] = try await consumer.assignment()
            }
            let union = seen.values.reduce(into: Set<String>()) { $0.formUnion($1) }
            let owned = assignments.values.map(\.count)
            return union.count == 2000 && owned.count == 2 && owned.allSatisfy { $0 == 2 }
        }
        // Commit where each member stands now that the group is settled.
        for consumer in consumers {
            let batch = try await consumer.poll(maxMessages: 500, timeoutMilliseconds: 100)
            try await consumer.commit(batch.messages)
        }
        #expect(Set(assignments[first]!).isDisjoint(with: assignments[second]!))
        #expect(!seen[first]!.isEmpty && !seen[second]!.isEmpty)
        await first.close()
        await second.close()

        let partitions = (0..<4).map { KafkaTopicPartition(topic, Int32($0)) }
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        let committed = try await admin.committedOffsets(group: group, partitions: partitions)
        await admin.close()
        #expect(committed.values.compactMap { $0 }.count == 4)

        _ = try await produce(topic, 2000..<2500)
        let restarted = try consumer(group)
        try await restarted.subscribe([topic])
        var firstOffset: [KafkaTopicPartition: Int64] = [:]
        var resumed = Set<String>()
        try await eventually(timeout: .seconds(60), "the restarted consumer to read the 500 new messages") {
            let batch = try await restarted.poll(maxMessages: 500, timeoutMilliseconds: 200)
            for message in batch.messages where firstOffset[message.topicPartition] == nil {
                firstOffset[message.topicPartition] = message.offset
            }
            resumed.formUnion(batch.messages.map(\.valueString))
            return (2000..<2500).allSatisfy { resumed.contains("message-\($0)") }
        }
        await restarted.close()
        for partition in partitions {
            #expect(firstOffset[partition] == committed[partition] ?? nil, "\(partition) resumed elsewhere")
        }
        #expect(resumed.count == 500, "nothing before the committed offsets is read again")
    }

    @Test("a paused partition delivers nothing until resumed; the others go on")
    func pauseAndResume() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        let consumer = try consumer(TestEnvironment.uniqueName("group"))
        try await consumer.subscribe([topic])
        try await eventually("the partitions to be assigned") {
            _ = try await consumer.poll(maxMessages: 10, timeoutMilliseconds: 100)
            return try await consumer.assignment().count == 2
        }
        let paused = KafkaTopicPartition(topic, 0)
        try await consumer.pause([paused])
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        try await producer.send(
            (0..<20).map {
                KafkaProducerMessage(topic: topic, partition: Int32($0 % 2), key: nil, value: Array("m\($0)".utf8))
            })
        await producer.close()

        var whilePaused: [KafkaMessage] = []
        try await eventually("the unpaused partition's 10 messages") {
            whilePaused += try await consumer.poll(maxMessages: 50, timeoutMilliseconds: 100).messages
            return whilePaused.count >= 10
        }
        // A few more polls: the paused partition must stay silent.
        for _ in 0..<5 { whilePaused += try await consumer.poll(maxMessages: 50, timeoutMilliseconds: 100).messages }
        #expect(whilePaused.count == 10)
        #expect(whilePaused.allSatisfy { $0.partition == 1 })

        try await consumer.resume([paused])
        var afterResume: [KafkaMessage] = []
        try await eventually("the paused partition's 10 messages after resume") {
            afterResume += try await consumer.poll(maxMessages: 50, timeoutMilliseconds: 100).messages
            return afterResume.count >= 10
        }
        #expect(afterResume.allSatisfy { $0.partition == 0 })
        await consumer.close()
    }

    @Test("offsets set by admin on a new group, and lag from committed offsets and high watermarks")
    func adminOffsetsAndLag() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 3)
        let reports = try await produce(topic, 0..<300)
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        closeAfterTest { await admin.close() }
        let group = TestEnvironment.uniqueName("group")
        let partitions = (0..<3).map { KafkaTopicPartition(topic, Int32($0)) }
        var high: [KafkaTopicPartition: Int64] = [:]
        for partition in partitions { high[partition] = try await admin.watermarks(partition).high }
        #expect(high.values.reduce(0, +) == Int64(reports.count))

        let target = Dictionary(uniqueKeysWithValues: partitions.map { ($0, high[$0]! / 2) })
        try await admin.alterCommittedOffsets(group: group, offsets: target)
        let committed = try await admin.committedOffsets(group: group, partitions: partitions)
        for partition in partitions { #expect(committed[partition] == target[partition]) }
        let lag = partitions.reduce(Int64(0)) { $0 + high[$1]! - target[$1]! }
        #expect(lag == Int64(reports.count) - target.values.reduce(0, +))

        let consumer = try consumer(group)
        try await consumer.subscribe([topic])
        var read: [KafkaMessage] = []
        try await eventually("the consumer to read from the altered offsets") {
            read += try await consumer.poll(maxMessages: 500, timeoutMilliseconds: 100).messages
            return read.count >= Int(lag)
        }
        await consumer.close()
        #expect(read.count == Int(lag))
        for partition in partitions {
            #expect(read.filter { $0.topicPartition == partition }.map(\.offset).min() == target[partition])
        }
    }

    @Test("an unknown or invalid librdkafka property stops start-up with its name")
    func badProperty() throws {
        let error = #expect(throws: KafkaError.self) {
            _ = try KafkaProducer(
                configuration: KafkaProducerConfiguration(
                    bootstrapServers: "127.0.0.1:1", properties: KafkaProperties(["acks": "maybe"])))
        }
        #expect(error?.description.contains("'acks'") == true)
        let secret = #expect(throws: KafkaError.self) {
            _ = try KafkaProducer(
                configuration: KafkaProducerConfiguration(
                    bootstrapServers: "127.0.0.1:1", properties: KafkaProperties(["sasl.password.nope": "hunter2"])))
        }
        #expect(secret?.description.contains("hunter2") == false)
    }

}

extension KafkaConsumer: Hashable {
    public static func == (lhs: KafkaConsumer, rhs: KafkaConsumer) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}
