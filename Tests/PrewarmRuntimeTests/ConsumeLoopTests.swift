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
struct ConsumeLoopTests {
    struct Item: Decodable, Sendable {
        let id: Int
    }

    /// Writes `prefix:id -> offset` for each message, as a worker's cache write would.
    struct RedisWriter: TopicHandler {
        let redis: RedisConnection
        let prefix: String
        var gate: Gate?

        func decode(_ message: KafkaMessage) throws -> Item {
            let item = try JSONDecoder().decode(Item.self, from: Data(message.value))
            guard item.id >= 0 else { throw InvalidMessage("id \(item.id) is negative", errorClass: "NegativeID") }
            return item
        }

        func handle(_ batch: [Decoded<Item>]) async throws {
            await gate?.arrive()
            let replies = try await redis.pipeline(
                batch.map { RedisCommand("SET", "\(prefix):\($0.value.id)", $0.message.offset, "EX", 600) })
            if let failed = replies.first(where: { if case .error = $0 { true } else { false } }) {
                throw RedisError(.server, operation: "SET", message: failed.string ?? "")
            }
        }
    }

    static let fastGroup = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"])

    private func loop(
        topic: String, group: String, handler: RedisWriter, properties: KafkaProperties = fastGroup,
        configure: (inout ConsumeLoopConfiguration) -> Void = { _ in }
    ) throws -> ConsumeLoop {
        let bootstrap = try TestEnvironment.kafkaBootstrap
        var configuration = ConsumeLoopConfiguration(
            groupID: group, maxBatchMessages: 50, maxBatchWait: .milliseconds(100),
            retryBackoff: Backoff(initial: .milliseconds(200), maximum: .seconds(1)))
        configure(&configuration)
        return ConsumeLoop(
            configuration: configuration,
            consumer: try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    groupID: group, bootstrapServers: bootstrap, properties: properties)),
            deadLetterProducer: try KafkaProducer(
                configuration: KafkaProducerConfiguration(bootstrapServers: bootstrap)),
            routes: [TopicRoute(topic: topic, handler: handler)],
            logger: Logger(label: "test.consume-loop"))
    }

    private func produce(_ topic: String, _ values: [String]) async throws {
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        try await producer.send(
            values.enumerated().map { KafkaProducerMessage(topic: topic, key: "k\($0.offset)", value: $0.element) })
        await producer.close()
    }

    private func read(_ topic: String, count: Int) async throws -> [KafkaMessage] {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: TestEnvironment.uniqueName("reader"), bootstrapServers: try TestEnvironment.kafkaBootstrap))
        try await consumer.subscribe([topic])
        var messages: [KafkaMessage] = []
        try await eventually("\(count) messages on \(topic)") {
            messages += try await consumer.poll(maxMessages: 100, timeoutMilliseconds: 100).messages
            return messages.count >= count
        }
        await consumer.close()
        return messages
    }

    private func stored(_ redis: RedisConnection, _ prefix: String, ids: Range<Int>) async throws -> Int {
        try await redis.mget(ids.map { "\(prefix):\($0)" }).compactMap { $0 }.count
    }

    private func running(_ loop: ConsumeLoop) -> (ServiceGroup, Task<Void, any Error>) {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [loop], logger: Logger(label: "test.service-group")))
        return (group, Task { try await group.run() })
    }

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

/// Holds handlers at a barrier until the test opens it.
actor Gate {
    private var isOpen = true
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private(set) var waiting = 0

    func close() { isOpen = false }

    func open() {
        isOpen = true
        waiters.forEach { $0.resume() }
        waiters.removeAll()
    }

    func arrive() async {
        guard !isOpen else { return }
        waiting += 1
        await withCheckedContinuation { waiters.append($0) }
    }
}
