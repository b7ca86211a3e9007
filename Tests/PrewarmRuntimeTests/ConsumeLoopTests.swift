import Foundation
import Kafka
import Logging
import PrewarmRuntime
import Redis
import ServiceLifecycle
import TestSupport
import Testing

/// The consume loop against the dev broker and real Redis.
@Suite("Consume loop")
struct ConsumeLoopTests: LoopTesting {
    @Test("good messages are processed; undecodable and invalid ones go to the DLQ with their reason")
    func poisonMessages() async throws {
        let topic = try TestEnvironment.createTopic(partitions: 2)
        try TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
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

    @Test("Redis stopped for 10 s under load: partitions pause and resume, nothing is lost or dead-lettered")
    func redisOutage() async throws {
        let server = try PrivateRedisServer()
        try await server.start()
        let redis = try await RedisConnection.connect(server.configuration)
        defer { Task { await redis.close() } }
        let topic = try TestEnvironment.createTopic(partitions: 3)
        let prefix = "outage"
        let consumeLoop = try loop(
            topic: topic, group: TestEnvironment.uniqueName("group"), handler: RedisWriter(redis: redis, prefix: prefix)
        )
        let (services, task) = running(consumeLoop)

        try await produce(topic, (0..<300).map { "{\"id\": \($0)}" })
        try await eventually(timeout: .seconds(60), "the first 300 messages stored") {
            try await stored(redis, prefix, ids: 0..<300) == 300
        }
        try await server.stop()  // a crash: this Redis keeps nothing on disk
        try await produce(topic, (300..<600).map { "{\"id\": \($0)}" })
        try await eventually(timeout: .seconds(30), "a partition paused by the outage") {
            !consumeLoop.statistics.snapshot.pausedPartitions.isEmpty
        }
        try await Task.sleep(for: .seconds(10))
        let duringOutage = consumeLoop.statistics.snapshot
        #expect(duringOutage.deadLettered == 0, "an outage is never dead-lettered")
        #expect(duringOutage.transientFailures >= 2, "retried with backoff while Redis was down")
        try await server.start()
        try await eventually(timeout: .seconds(60), "the 300 messages of the outage stored after Redis came back") {
            try await stored(redis, prefix, ids: 300..<600) == 300
        }
        await services.triggerGracefulShutdown()
        try await task.value
        #expect(consumeLoop.statistics.snapshot.deadLettered == 0)
        #expect(consumeLoop.statistics.snapshot.pausedPartitions.isEmpty)
    }

    @Test("graceful shutdown during a batch lets it finish and commits it")
    func shutdownDuringBatch() async throws {
        let topic = try TestEnvironment.createTopic(partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
        let prefix = TestEnvironment.uniqueName("term")
        let gate = Gate()
        let group = TestEnvironment.uniqueName("group")
        let consumeLoop = try loop(
            topic: topic, group: group, handler: RedisWriter(redis: redis, prefix: prefix, gate: gate)
        ) {
            $0.maxBatchMessages = 100
        }
        try await produce(topic, (0..<40).map { "{\"id\": \($0)}" })
        await gate.close()
        let (services, task) = running(consumeLoop)
        try await eventually(timeout: .seconds(30), "a batch to reach the handler") { await gate.waiting > 0 }
        await services.triggerGracefulShutdown()
        try await Task.sleep(for: .milliseconds(300))  // the shutdown is under way while the batch waits
        await gate.open()
        try await task.value

        // One partition, ids equal offsets: the batch in hand was written and committed.
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        let committed = try await admin.committedOffsets(group: group, partitions: [KafkaTopicPartition(topic, 0)])
        await admin.close()
        let offset = try #require(committed[KafkaTopicPartition(topic, 0)] ?? nil)
        #expect(offset > 0)
        #expect(try await stored(redis, prefix, ids: 0..<Int(offset)) == Int(offset))
    }

    @Test("a batch longer than max.poll.interval.ms keeps the consumer in its group")
    func longBatch() async throws {
        let topic = try TestEnvironment.createTopic(partitions: 2)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
        let prefix = TestEnvironment.uniqueName("long")
        let gate = Gate()
        // librdkafka leaves the group by itself if poll is not called within 7 s.
        let properties = Self.fastGroup.merging(KafkaProperties(["max.poll.interval.ms": "7000"]))
        let consumeLoop = try loop(
            topic: topic, group: TestEnvironment.uniqueName("group"),
            handler: RedisWriter(redis: redis, prefix: prefix, gate: gate), properties: properties
        ) {
            $0.longBatchAfter = .seconds(1)
            $0.heartbeatEvery = .milliseconds(500)
        }
        let (services, task) = running(consumeLoop)
        try await eventually(timeout: .seconds(30), "both partitions assigned") {
            consumeLoop.statistics.snapshot.assignedPartitions.count == 2
        }
        await gate.close()
        try await produce(topic, (0..<100).map { "{\"id\": \($0)}" })
        try await eventually(timeout: .seconds(30), "a batch to reach the handler") { await gate.waiting > 0 }
        try await Task.sleep(for: .seconds(10))  // longer than max.poll.interval.ms
        #expect(consumeLoop.statistics.snapshot.assignedPartitions.count == 2)
        await gate.open()
        try await eventually(timeout: .seconds(60), "all 100 messages stored") {
            try await stored(redis, prefix, ids: 0..<100) == 100
        }
        #expect(consumeLoop.statistics.snapshot.assignedPartitions.count == 2, "never lost its partitions")
        await services.triggerGracefulShutdown()
        try await task.value
    }
}
