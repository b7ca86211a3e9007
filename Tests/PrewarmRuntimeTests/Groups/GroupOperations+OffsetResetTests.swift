import Foundation
import Kafka
import Logging
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import ServiceLifecycle
import TestSupport
import Testing

/// `prewarmctl offsets reset`: a group moved to earliest, latest or a time, refused while it runs.
extension GroupOperationsTests {
    @Test("after an offset reset to earliest, a restarted worker replays every message")
    func resetThenRestartReplays() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("replay")
        let group = TestEnvironment.uniqueName("group")
        try await produce(topic, (0..<60).map { "{\"id\": \($0)}" })

        try await runUntil(topic: topic, group: group, redis: redis, prefix: prefix) {
            try await stored(redis, prefix, ids: 0..<60) == 60
        }
        #expect(try await operations().lag(group: group, topics: [topic]).allSatisfy { $0.lag == 0 })
        try await redis.send(RedisCommand("DEL", arguments: (0..<60).map { "\(prefix):\($0)" }))

        let offsets = try await operations().resetOffsets(group: group, topic: topic, to: .earliest)
        #expect(offsets.values.allSatisfy { $0 == 0 })
        #expect(try await operations().lag(group: group, topics: [topic]).reduce(0) { $0 + $1.lag } == 60)
        try await runUntil(topic: topic, group: group, redis: redis, prefix: prefix) {
            try await stored(redis, prefix, ids: 0..<60) == 60
        }
    }

    @Test("pods started right after a reset (the operator's default session) get every partition within seconds")
    func rejoinAfterReset() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 12)
        let group = TestEnvironment.uniqueName("group")
        func members() async throws -> [KafkaConsumer] {
            var consumers: [KafkaConsumer] = []
            for _ in 0..<2 {
                let consumer = try KafkaConsumer(
                    configuration: KafkaConsumerConfiguration(
                        groupID: group, bootstrapServers: try TestEnvironment.kafkaBootstrap,
                        properties: Self.fastGroup))
                try await consumer.subscribe([topic])
                consumers.append(consumer)
            }
            return consumers
        }
        func assigned(_ consumers: [KafkaConsumer]) async throws -> Int {
            var total = 0
            for consumer in consumers {
                _ = try await consumer.poll(maxMessages: 10, timeoutMilliseconds: 100)
                total += try await consumer.assignment().count
            }
            return total
        }
        let first = try await members()
        let join = TestEnvironment.broker.groupJoinTimeout
        try await eventually(timeout: join, "the first pods' assignment") { try await assigned(first) == 12 }
        for consumer in first { await consumer.close() }
        // As `prewarmctl offsets reset` runs: no session setting of its own.
        let operations = GroupOperations(
            bootstrapServers: try TestEnvironment.kafkaBootstrap, properties: KafkaProperties(),
            logger: Logger(label: "test.ops"))
        _ = try await operations.resetOffsets(group: group, topic: topic, to: .earliest)
        let second = try await members()
        closeAfterTest { for consumer in second { await consumer.close() } }
        // The mock kept the rebalance waiting on the reset member's 45 s session, past its leave:
        // with the reset member's short session they are assigned well within 35 s, even on a busy machine.
        // (noida's joins are slow whatever the session: there it only has to happen.)
        let within = TestEnvironment.broker == .mock ? .seconds(35) : join
        try await eventually(timeout: within, "the next pods' assignment") { try await assigned(second) == 12 }
    }

    @Test("an offset reset is refused while the group's worker is running")
    func resetRefusedWhileActive() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let group = TestEnvironment.uniqueName("group")
        let worker = try loop(topic: topic, group: group, handler: RedisWriter(redis: redis, prefix: "active"))
        let (services, task) = running(worker)
        try await eventually(timeout: .seconds(30), "the worker to own both partitions") {
            worker.statistics.snapshot.assignedPartitions.count == 2
        }
        let error = await #expect(throws: GroupHasActiveMembers.self) {
            _ = try await operations().resetOffsets(group: group, topic: topic, to: .earliest)
        }
        #expect(error?.description.contains("stop its workers") == true)
        await services.triggerGracefulShutdown()
        try await task.value
    }

    @Test("a reset to a time starts each partition at its first message from then on")
    func resetToTime() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 2)
        try await produce(topic, (0..<20).map { "{\"id\": \($0)}" })
        try await Task.sleep(for: .milliseconds(1100))
        let cut = Date()
        try await Task.sleep(for: .milliseconds(1100))
        try await produce(topic, (20..<32).map { "{\"id\": \($0)}" })
        let group = TestEnvironment.uniqueName("group")
        _ = try await operations().resetOffsets(group: group, topic: topic, to: .time(cut))
        #expect(try await operations().lag(group: group, topics: [topic]).reduce(0) { $0 + $1.lag } == 12)
        let later = TestEnvironment.uniqueName("group")
        _ = try await operations().resetOffsets(group: later, topic: topic, to: .time(Date()))
        #expect(try await operations().lag(group: later, topics: [topic]).reduce(0) { $0 + $1.lag } == 0)
        #expect(throws: UsageError.self) { try ResetTarget(parsing: "yesterday") }
        #expect(
            try ResetTarget(parsing: "2026-11-21T00:00:00+08:00") == .time(Date(timeIntervalSince1970: 1_795_190_400)))
        #expect(try ResetTarget(parsing: "42") == .offset(42))
    }
}
