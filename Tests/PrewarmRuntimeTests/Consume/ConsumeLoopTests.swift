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

/// The consume loop against the dev broker and real Redis.
@Suite("Consume loop", .closesResources)
struct ConsumeLoopTests: LoopTesting {

    @Test("commits the broker refuses are tried again though no message follows: the group ends with no lag")
    func commitRetried() async throws {
        // The mock's own: its request errors would reach every test beside on the shared broker.
        let broker = try KafkaMockCluster(brokers: 1)
        closeAfterTest { broker.shutdown() }
        let topic = TestEnvironment.uniqueName("commits")
        try broker.createTopic(topic, partitions: 2)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("commits")
        let group = TestEnvironment.uniqueName("group")
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: broker.bootstrapServers))
        try await producer.send(
            (0..<40).map { KafkaProducerMessage(topic: topic, key: "k\($0)", value: "{\"id\": \($0)}") })
        await producer.close()
        // The batch's commit and the first retry refused with an error librdkafka hands back at
        // once and that keeps the member in the group (so no rebalance reads the batch again
        // and commits it by another way): only the loop's own retry can close the lag.
        broker.failRequests(api: .offsetCommit, count: 2, error: 28)  // INVALID_COMMIT_OFFSET_SIZE
        let consumeLoop = try loop(
            topic: topic, group: group, handling: RedisWriter(redis: redis, prefix: prefix),
            bootstrap: broker.bootstrapServers
        ) { $0.maxBatchMessages = 100 }
        let (services, task) = running(consumeLoop)
        try await eventually(timeout: .seconds(30), "the 40 messages stored") {
            try await stored(redis, prefix, ids: 0..<40) == 40
        }
        let operations = GroupOperations(
            bootstrapServers: broker.bootstrapServers, properties: KafkaProperties(), logger: Logger(label: "test"))
        try await eventually(timeout: .seconds(30), "the group's committed offsets at the end of both partitions") {
            try await operations.lag(group: group, topics: [topic]).allSatisfy { $0.committed == $0.high }
        }
        #expect(consumeLoop.statistics.snapshot.commitFailures == 2, "both refusals seen, and outlived")
        await services.triggerGracefulShutdown()
        try await task.value
    }

    @Test("Redis stopped for 10 s: partitions pause and resume, nothing lost or dead-lettered, one alert")
    func redisOutage() async throws {
        let server = try PrivateRedisServer()
        try await server.start()
        let redis = try await RedisConnection.connect(server.configuration)
        closeAfterTest { await redis.close() }
        let shared = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await shared.close() }
        let topic = try await TestEnvironment.createTopic(partitions: 3)
        let prefix = "outage"
        let group = TestEnvironment.uniqueName("group")
        let alerts = Alerts(
            worker: "test", logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance, redis: shared)
        let consumeLoop = try loop(
            topic: topic, group: group, handler: RedisWriter(redis: redis, prefix: prefix), alerts: alerts
        ) { $0.alertAfter = .seconds(3) }
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
        // The alert is due 3 s into the outage; on a loaded machine its write may come late.
        func outageAlerts() async throws -> Int {
            try await Alerts.recent(shared, count: 100).filter {
                $0.kind == "outage" && $0.details["group"] == group
            }.count
        }
        try await eventually(timeout: .seconds(30), "the outage alerted") { try await outageAlerts() >= 1 }
        #expect(try await outageAlerts() == 1, "one alert for the outage, not one per retry")
        try await server.start()
        // The retries back off to 30 s; a loaded machine adds its own delays.
        try await eventually(timeout: .seconds(90), "the 300 messages of the outage stored after Redis came back") {
            try await stored(redis, prefix, ids: 300..<600) == 300
        }
        await services.triggerGracefulShutdown()
        try await task.value
        #expect(consumeLoop.statistics.snapshot.deadLettered == 0)
        #expect(consumeLoop.statistics.snapshot.pausedPartitions.isEmpty)
    }

    @Test("graceful shutdown during a batch lets it finish and commits it")
    func shutdownDuringBatch() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
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
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
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

/// Records each call's partitions and offsets, how many calls ran at once, and fails the
/// first call that holds partition 0 as an outage would.
actor LaneLog {
    var calls: [[KafkaTopicPartition: [Int64]]] = []
    var running = 0
    var mostAtOnce = 0
    var failedOnce = false

    func enter() {
        running += 1
        mostAtOnce = max(mostAtOnce, running)
    }

    func leave(_ call: [KafkaTopicPartition: [Int64]]) -> Bool {
        running -= 1
        if call.keys.contains(where: { $0.partition == 0 }) && !failedOnce {
            failedOnce = true
            return false
        }
        calls.append(call)
        return true
    }
}

struct LaneRecorder: TopicHandler {
    let log: LaneLog

    func decode(_ message: KafkaMessage) throws -> Int64 { message.offset }

    func handle(_ batch: [Decoded<Int64>]) async throws {
        await log.enter()
        try await Task.sleep(for: .milliseconds(30))  // long enough for the lanes to overlap
        let call = Dictionary(grouping: batch.map(\.message), by: \.topicPartition).mapValues { $0.map(\.offset) }
        guard await log.leave(call) else {
            throw RedisError(.connectionLost, operation: "test", message: "simulated outage")
        }
    }
}

@Suite("Consume loop with concurrent batches", .closesResources)
struct ConcurrentBatchTests: LoopTesting {
    @Test("a poll's partitions are handled in lanes at once, each partition in order; an outage in one lane is retried")
    func lanes() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 4)
        let group = TestEnvironment.uniqueName("group")
        // Enough polls that some hold several partitions even on a loaded machine (a poll returns
        // what has arrived, and the partitions' fetches come back one by one).
        let count = 1600
        try await produce(topic, (0..<count).map { "m\($0)" })
        let log = LaneLog()
        let bootstrap = try TestEnvironment.kafkaBootstrap
        let loop = ConsumeLoop(
            configuration: ConsumeLoopConfiguration(
                groupID: group, maxBatchMessages: 200, maxBatchWait: .milliseconds(100),
                retryBackoff: Backoff(initial: .milliseconds(50), maximum: .milliseconds(200)), concurrentBatches: 2),
            consumer: try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    groupID: group, bootstrapServers: bootstrap, properties: Self.fastGroup)),
            deadLetterProducer: try KafkaProducer(
                configuration: KafkaProducerConfiguration(bootstrapServers: bootstrap)),
            routes: [TopicRoute(topic: topic, handler: LaneRecorder(log: log))], logger: Logger(label: "test.lanes"))
        let (services, task) = running(loop)
        try await eventually(timeout: .seconds(60), "all \(count) messages handled") {
            loop.statistics.snapshot.processed >= count
        }
        await services.triggerGracefulShutdown()
        try await task.value

        #expect(await log.mostAtOnce >= 2, "lanes ran at the same time")
        #expect(await log.failedOnce && loop.statistics.snapshot.transientFailures >= 1)
        #expect(loop.statistics.snapshot.deadLettered == 0)
        var seen: [KafkaTopicPartition: [Int64]] = [:]
        for call in await log.calls {
            for (partition, offsets) in call { seen[partition, default: []] += offsets }
        }
        var total = 0
        for (partition, offsets) in seen {
            #expect(offsets == offsets.sorted() && Set(offsets).count == offsets.count, "\(partition) in order, once")
            total += offsets.count
        }
        #expect(total == count, "every message handled once it succeeded, the failed lane's included")
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(groupID: group, bootstrapServers: bootstrap))
        let partitions = (0..<4).map { KafkaTopicPartition(topic, Int32($0)) }
        let committed = try await consumer.committed(partitions)
        await consumer.close()
        let committedTotal: Int64 = partitions.compactMap { committed[$0] ?? nil }.reduce(0, +)
        #expect(committedTotal == Int64(count), "committed to the end")
    }
}

/// Records the offsets of each batch that succeeded; fails the first batch that does not
/// start at offset 0, after a pause long enough for the next poll to be fetched beside it.
actor RetryLog {
    var handled: [Int64] = []
    var failed = false

    func finish(_ offsets: [Int64]) -> Bool {
        if !failed && offsets.first != 0 {
            failed = true
            return false
        }
        handled += offsets
        return true
    }
}

struct FailsSecondBatch: TopicHandler {
    let log: RetryLog

    func decode(_ message: KafkaMessage) throws -> Int64 { message.offset }

    func handle(_ batch: [Decoded<Int64>]) async throws {
        try await Task.sleep(for: .milliseconds(150))
        guard await log.finish(batch.map(\.value)) else {
            throw RedisError(.connectionLost, operation: "test", message: "simulated outage")
        }
    }
}

@Suite("Consume loop retrying with a poll fetched ahead", .closesResources)
struct RetryAheadTests: LoopTesting {
    @Test(
        "a batch that fails while the next poll is fetched starts again where it failed, and nothing after it skips it")
    func retryWithPollAhead() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let count = 600
        try await produce(topic, (0..<count).map { "m\($0)" })
        let log = RetryLog()
        let bootstrap = try TestEnvironment.kafkaBootstrap
        let group = TestEnvironment.uniqueName("group")
        // A backoff shorter than a batch: the partition is due again before the poll fetched
        // beside the failed batch is handled.
        let loop = try self.loop(
            topic: topic, group: group, handling: FailsSecondBatch(log: log), label: "test.retry-ahead"
        ) {
            $0.maxBatchMessages = 100
            $0.retryBackoff = Backoff(initial: .milliseconds(1), maximum: .milliseconds(1))
        }
        let (services, task) = running(loop)
        let partition = KafkaTopicPartition(topic, 0)
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(groupID: group, bootstrapServers: bootstrap))
        closeAfterTest { await consumer.close() }
        try await eventually(timeout: .seconds(60), "the group to commit to the end") {
            (try await consumer.committed([partition])[partition] ?? nil) == Int64(count)
        }
        await services.triggerGracefulShutdown()
        try await task.value

        #expect(await log.failed && loop.statistics.snapshot.transientFailures == 1)
        #expect(await log.handled == (0..<Int64(count)).map { $0 }, "every offset handled once, in order")
    }
}

/// Rejects the items whose number is a multiple of 50 by index, counting its calls.
struct NamesBadItems: TopicHandler {
    let calls: Events

    func decode(_ message: KafkaMessage) throws -> Int {
        Int(String(decoding: message.value, as: UTF8.self).dropFirst()) ?? -1
    }

    func handle(_ batch: [Decoded<Int>]) async throws {
        await calls.add(batch.count)
        var bad: [Int: InvalidMessage] = [:]
        for (index, item) in batch.enumerated() where item.value % 50 == 0 {
            bad[index] = InvalidMessage("\(item.value) is a multiple of 50", errorClass: "Fifty")
        }
        if !bad.isEmpty { throw InvalidItems(bad) }
    }
}

actor Events {
    var sizes: [Int] = []
    func add(_ size: Int) { sizes.append(size) }
}

@Suite("Consume loop with handlers that name their bad items", .closesResources)
struct InvalidItemsTests: LoopTesting {
    @Test("named bad items are dead-lettered and the rest handed back once, not message by message")
    func namedBadItems() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let dlq = try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        try await produce(topic, (0..<200).map { "m\($0)" })
        let calls = Events()
        let group = TestEnvironment.uniqueName("group")
        let loop = try self.loop(topic: topic, group: group, handling: NamesBadItems(calls: calls), label: "test.items")
        {
            $0.maxBatchMessages = 200
            $0.retryBackoff = Backoff()
        }
        let (services, task) = running(loop)
        try await eventually(timeout: .seconds(60), "all 200 messages finished") {
            loop.statistics.snapshot.processed >= 200
        }
        await services.triggerGracefulShutdown()
        try await task.value

        #expect(loop.statistics.snapshot.deadLettered == 4)
        let sizes = await calls.sizes
        #expect(sizes.reduce(0, +) < 2 * 200 + 10, "each item handled at most twice, never one by one")
        #expect(!sizes.contains(1))
        let letters = try await read(dlq, count: 4)
        #expect(
            Set(letters.map { String(decoding: $0.value, as: UTF8.self) }) == ["m0", "m50", "m100", "m150"])
        #expect(
            letters.allSatisfy { $0.headers.contains { $0.name == "prewarm-error-class" && $0.stringValue == "Fifty" } }
        )
    }
}
