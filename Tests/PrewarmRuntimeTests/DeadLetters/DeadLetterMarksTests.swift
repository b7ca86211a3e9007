import CoreMetrics
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
        _ topic: String, group: String, redis: RedisConnection, prefix: String, marks: DeadLetterMarks,
        alerts: Alerts? = nil
    ) async throws {
        let worker = try loop(
            topic: topic, group: group, handling: RedisWriter(redis: redis, prefix: prefix), alerts: alerts,
            deadLetterMarks: marks)
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

    @Test(
        "a letter its DLQ lost after acknowledging it (the partition now ends before it, or holds another letter there) is sent again with an alert; a letter still there is not"
    )
    func lostByTheBroker() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let dlq = topic + ".dlq"
        try await TestEnvironment.createTopic(named: dlq, partitions: 1)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("marks")
        var values = (0..<20).map { "{\"id\": \($0)}" }
        for bad in [3, 8, 13] { values[bad] = "not json \(bad)" }
        try await produce(topic, values)
        let group = TestEnvironment.uniqueName("group")
        let marks = DeadLetterMarks(redis: redis, group: group, retention: .seconds(3600))
        try await pass(topic, group: group, redis: redis, prefix: prefix, marks: marks)
        #expect(try await letters(in: dlq) == 3)
        func mark(_ offset: Int) -> String { "\(DeadLetterMarks.prefix)\(group):\(topic):0:\(offset)" }
        func place(_ offset: Int) async throws -> String? {
            try await redis.send("GET", mark(offset)).string?.split(separator: "@").last.map(String.init)
        }
        #expect(try await place(3) == "0:0", "a mark says where the DLQ put its letter")
        #expect(try await place(8) == "0:1")
        #expect(try await place(13) == "0:2")

        // What the group's marks see after a broker lost acknowledged letters: the letter of 13
        // at an offset the partition no longer reaches (its tail lost), the letter of 8 at an
        // offset that now holds another letter (its tail lost and written again).
        for (offset, place) in [(13, "0:3"), (8, "0:0")] {
            let value = try await redis.send("GET", mark(offset)).string!
            let identity = value.split(separator: "@").first!
            _ = try await redis.send("SET", mark(offset), "\(identity)@\(place)")
        }
        let alerts = Alerts(
            worker: "test", logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance, redis: redis)
        _ = try await operations().resetOffsets(group: group, topic: topic, to: .earliest)
        try await pass(topic, group: group, redis: redis, prefix: prefix, marks: marks, alerts: alerts)
        #expect(try await letters(in: dlq) == 5, "the two lost letters sent again, the one still there not")
        try await eventually(timeout: .seconds(10), "the loss alerted") {
            try await Alerts.recent(redis, count: 100).contains {
                $0.kind == "dead-letter-lost-by-broker" && $0.details["group"] == group
            }
        }
        #expect(try await place(3) == "0:0")
        let resent = [try await place(8), try await place(13)]
        #expect(Set(resent) == ["0:3", "0:4"], "the new letters' places marked")

        // Handled once more: every letter is where its mark says, none sent again.
        _ = try await operations().resetOffsets(group: group, topic: topic, to: .earliest)
        try await pass(topic, group: group, redis: redis, prefix: prefix, marks: marks)
        #expect(try await letters(in: dlq) == 5)
    }
}
