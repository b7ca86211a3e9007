import Foundation
import Kafka
import Logging
import PrewarmRuntime
import Redis
import TestSupport
import Testing

/// A bad message is dead-lettered once per group, however often the group handles it.
extension GroupOperationsTests {
    /// Runs a loop of `group` with `marks` until the group has no lag on `topic`.
    private func pass(
        _ topic: String, group: String, redis: RedisConnection, prefix: String, marks: DeadLetterMarks
    ) async throws {
        let worker = try loop(
            topic: topic, group: group, handling: RedisWriter(redis: redis, prefix: prefix), deadLetterMarks: marks)
        let (services, task) = running(worker)
        try await eventually(timeout: .seconds(60), "\(group) to read all of \(topic)") {
            try await operations().lag(group: group, topics: [topic]).allSatisfy { $0.lag == 0 }
        }
        await services.triggerGracefulShutdown()
        try await task.value
    }

    private func letters(in dlq: String) async throws -> Int64 {
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        return try await admin.watermarks(KafkaTopicPartition(dlq, 0)).high
    }

    @Test(
        "a bad message handled again by its group (a replay) is not dead-lettered again; another group letters it; without Redis the letter is sent"
    )
    func oncePerGroup() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("marks")
        var values = (0..<20).map { "{\"id\": \($0)}" }
        values.insert("not json", at: 5)
        values.insert("{\"id\": -1}", at: 15)
        try await produce(topic, values)

        let group = TestEnvironment.uniqueName("group")
        let marks = DeadLetterMarks(redis: redis, group: group, retention: .seconds(3600))
        try await pass(topic, group: group, redis: redis, prefix: prefix, marks: marks)
        #expect(try await letters(in: topic + ".dlq") == 2)
        let keys = try await redis.send("KEYS", "\(DeadLetterMarks.prefix)\(group):\(topic):*")
        #expect(keys.array?.count == 2, "one mark a letter")

        // The group's offsets reset: every message handled again, none dead-lettered again.
        _ = try await operations().resetOffsets(group: group, topic: topic, to: .earliest)
        try await pass(topic, group: group, redis: redis, prefix: prefix, marks: marks)
        #expect(try await letters(in: topic + ".dlq") == 2)

        // Another group keeps its own letters.
        let other = TestEnvironment.uniqueName("group")
        try await pass(
            topic, group: other, redis: redis, prefix: prefix,
            marks: DeadLetterMarks(redis: redis, group: other, retention: .seconds(3600)))
        #expect(try await letters(in: topic + ".dlq") == 4)

        // A Redis that does not answer: the marks are not read, the letters are sent.
        let unreachable = try await RedisConnection.connect(try TestEnvironment.redis())
        await unreachable.close()
        _ = try await operations().resetOffsets(group: other, topic: topic, to: .earliest)
        try await pass(
            topic, group: other, redis: redis, prefix: prefix,
            marks: DeadLetterMarks(redis: unreachable, group: other, retention: .seconds(3600)))
        #expect(try await letters(in: topic + ".dlq") == 6, "a second letter beats a lost one")
    }
}
