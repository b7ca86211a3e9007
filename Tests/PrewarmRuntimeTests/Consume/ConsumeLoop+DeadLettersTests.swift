import CoreMetrics
import Foundation
import Kafka
import Logging
import Postgres
import PrewarmRuntime
import Redis
import ServiceLifecycle
import TestSupport
import Testing

/// Bad input through the loop: dead-lettered with its reason, at and over the DLQ's size limit.
extension ConsumeLoopTests {
    @Test("good messages are processed; undecodable and invalid ones go to the DLQ with their reason")
    func poisonMessages() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("poison")
        var values = (0..<200).map { "{\"id\": \($0)}" }
        values.insert("not json at all", at: 50)
        values.insert("{\"id\": -7}", at: 120)
        values.insert("{\"name\": \"no id\"}", at: 170)
        try await produce(topic, values)

        let group = TestEnvironment.uniqueName("group")
        let consumeLoop = try loop(topic: topic, group: group, handler: RedisWriter(redis: redis, prefix: prefix))
        let (services, task) = running(consumeLoop)
        // Counters can run ahead of distinct messages (a rebalance replays a batch), so wait
        // for the effects themselves.
        try await eventually(timeout: .seconds(60), "the 200 good messages stored and 3 dead-lettered") {
            try await stored(redis, prefix, ids: 0..<200) == 200 && consumeLoop.statistics.snapshot.deadLettered >= 3
        }
        await services.triggerGracefulShutdown()
        try await task.value
        #expect(consumeLoop.statistics.snapshot.transientFailures == 0)
        let letters = try await read(topic + ".dlq", count: 3)
        #expect(Set(letters.map(\.valueString)) == ["not json at all", "{\"id\": -7}", "{\"name\": \"no id\"}"])
        for letter in letters {
            #expect(letter.header(DeadLetter.Header.originalTopic)?.stringValue == topic)
            #expect(letter.header(DeadLetter.Header.consumerGroup)?.stringValue == group)
            #expect(letter.header(DeadLetter.Header.originalOffset)?.stringValue.flatMap { Int($0) } != nil)
            #expect(letter.header(DeadLetter.Header.originalPartition) != nil)
            #expect(letter.header(DeadLetter.Header.originalTimestamp) != nil)
            #expect(letter.header(DeadLetter.Header.errorMessage)?.stringValue?.isEmpty == false)
            #expect(letter.key != nil)
        }
        let negative = try #require(letters.first { $0.valueString.contains("-7") })
        #expect(negative.header(DeadLetter.Header.errorClass)?.stringValue == "NegativeID")
        #expect(negative.header(DeadLetter.Header.errorMessage)?.stringValue == "id -7 is negative")
        let undecodable = try #require(letters.first { $0.valueString == "not json at all" })
        #expect(undecodable.header(DeadLetter.Header.errorClass)?.stringValue == "DecodingError")
    }

    @Test(
        "bad messages at and over the DLQ's size limit: the partition moves on, each is dead-lettered once (the largest kept whole in PostgreSQL, down for a while), and replay restores it"
    )
    func deadLettersAtTheSizeLimit() async throws {
        let server = try PrivatePostgresServer()
        closeAfterTest { await server.destroy() }
        try await server.start()
        let pool = PostgresPool(try server.configuration, maximum: 2)
        closeAfterTest { await pool.close() }
        _ = try await pool.withConnection {
            try await Migrator.migrate($0, RuntimeSchema.migrations, logger: Logger(label: "test"))
        }
        try await server.stop()  // down when the largest letter comes: that is an outage, retried
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("sized")
        let atLimit = [UInt8](repeating: UInt8(ascii: "a"), count: 1_048_576)  // Kafka's default topic limit
        let over = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }  // binary, over the DLQ's limit
        let big = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: try TestEnvironment.kafkaBootstrap,
                properties: KafkaProperties(["message.max.bytes": "10000000"])))
        try await big.send([
            KafkaProducerMessage(topic: topic, key: "k0", value: #"{"id": 0}"#),
            KafkaProducerMessage(topic: topic, key: "k1", value: "not json"),
            KafkaProducerMessage(topic: topic, key: Array("k2".utf8), value: atLimit),
            KafkaProducerMessage(
                topic: topic, key: Array("k3".utf8), value: over, headers: [KafkaHeader("trace", [0, 255, 7])]),
            KafkaProducerMessage(topic: topic, key: "k4", value: #"{"id": 4}"#),
            KafkaProducerMessage(topic: topic, key: "k5", value: ""),
        ])
        await big.close()
        let consumeLoop = try loop(
            topic: topic, group: TestEnvironment.uniqueName("group"),
            handling: RedisWriter(redis: redis, prefix: prefix), deadLetterStore: DeadLetterStore(pool: pool))
        let (services, task) = running(consumeLoop)
        try await eventually(timeout: .seconds(30), "the batch retried while PostgreSQL is down") {
            consumeLoop.statistics.snapshot.transientFailures >= 2
        }
        try await server.start()
        try await eventually(timeout: .seconds(60), "the messages after the largest one stored") {
            try await stored(redis, prefix, ids: 4..<5) == 1
        }
        try await Task.sleep(for: .seconds(1))
        await services.triggerGracefulShutdown()
        try await task.value
        #expect(try await stored(redis, prefix, ids: 0..<1) == 1)
        #expect(consumeLoop.statistics.snapshot.deadLettered == 4, "four bad messages, each dead-lettered once")
        let letters = try await read(topic + ".dlq", count: 4)
        #expect(letters.count == 4, "no letter sent twice though its batch was retried")
        #expect(
            letters.first { $0.keyString == "k2" }?.value == atLimit, "a message at the topic's limit fits as it is")
        let reference = try #require(letters.first { $0.keyString == "k3" })
        #expect(reference.value.isEmpty && reference.header(DeadLetterStore.sizeHeader)?.stringValue == "3000000")
        #expect(reference.header("trace")?.value == [0, 255, 7], "the original headers kept")
        let ref = try #require(reference.header(DeadLetterStore.referenceHeader)?.stringValue)
        let kept = try #require(try await DeadLetterStore(pool: pool).message(ref))
        #expect(kept.value == over && kept.topic == topic && kept.key == Array("k3".utf8))
        #expect(kept.headers.first { $0.name == "trace" }?.value == [0, 255, 7])
        #expect(letters.contains { $0.keyString == "k5" && $0.value.isEmpty }, "an empty value is bad input too")

        // After a fix, the replay restores the largest message whole, from PostgreSQL.
        let operations = GroupOperations(
            bootstrapServers: try TestEnvironment.kafkaBootstrap, properties: KafkaProperties(),
            logger: Logger(label: "test"))
        let report = try await operations.replayDeadLetters(
            from: topic + ".dlq", replayGroup: TestEnvironment.uniqueName("replay"), store: DeadLetterStore(pool: pool))
        #expect(report.total == 4)
        let back = try await read(topic, count: 10)
        #expect(back.filter { $0.value == over }.count == 2, "the original and its replay, byte for byte")
    }
}
