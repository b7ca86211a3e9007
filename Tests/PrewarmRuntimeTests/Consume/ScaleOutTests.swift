import Foundation
import Kafka
import Logging
import PrewarmRuntime
import Redis
import ServiceLifecycle
import TestSupport
import Testing

/// Counts each handling of a message (`INCR prefix:id`), after a pause per batch, so a
/// rebalance lands while batches are in hand and batches are fetched ahead.
struct CountingWriter: TopicHandler {
    let redis: RedisConnection
    let prefix: String
    let pause: Duration

    func decode(_ message: KafkaMessage) throws -> Item {
        try JSONDecoder().decode(Item.self, from: Data(message.value))
    }

    func handle(_ batch: [Decoded<Item>]) async throws {
        try await Task.sleep(for: pause)
        _ = try await redis.pipeline(batch.map { RedisCommand("INCR", "\(prefix):\($0.value.id)") })
    }
}

@Suite("Consume loop scaled out", .closesResources)
struct ScaleOutTests: LoopTesting {
    @Test(
        "a second pod joining mid-stream takes partitions over: every message handled, all committed, one batch twice at most"
    )
    func secondMemberJoins() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 4)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let prefix = TestEnvironment.uniqueName("scale")
        let total = 3000
        try await produce(topic, (0..<total).map { "{\"id\": \($0)}" })
        let group = TestEnvironment.uniqueName("group")
        func member() throws -> ConsumeLoop {
            try loop(
                topic: topic, group: group,
                handling: CountingWriter(redis: redis, prefix: prefix, pause: .milliseconds(20)),
                label: "test.scale-out")
        }
        func handled() async throws -> [Int] {
            try await redis.mget((0..<total).map { "\(prefix):\($0)" }).map {
                $0.flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
            }
        }

        let first = try member()
        let (firstServices, firstTask) = running(first)
        try await eventually(timeout: .seconds(60), "the first member to be under way") {
            first.statistics.snapshot.processed >= 300
        }
        let second = try member()
        let (secondServices, secondTask) = running(second)
        try await eventually(timeout: .seconds(120), "every message handled") {
            try await handled().allSatisfy { $0 > 0 }
        }
        // Both members are still in the group: everything handled is committed by its owner.
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        let partitions = (0..<4).map { KafkaTopicPartition(topic, Int32($0)) }
        try await eventually(timeout: .seconds(30), "the group's offsets to reach the end of every partition") {
            let committed = try await admin.committedOffsets(group: group, partitions: partitions)
            var atEnd = true
            for partition in partitions {
                let high = try await admin.watermarks(partition).high
                atEnd = atEnd && committed[partition] == high
            }
            return atEnd
        }
        await admin.close()
        await firstServices.triggerGracefulShutdown()
        await secondServices.triggerGracefulShutdown()
        try await firstTask.value
        try await secondTask.value

        #expect(second.statistics.snapshot.processed > 0, "the second member took partitions over")
        let counts = try await handled()
        #expect(counts.allSatisfy { $0 >= 1 })
        // At least once, but only the batch in hand when the rebalance began is handled
        // again: commits refused during the rebalance stop the first member from handling
        // more (before, it went on until its revoke: 12 batches, 600 messages, here).
        // A starved machine can add rebalances (a member late with its heartbeat): each may
        // cost the batches in hand again, never more.
        let twice = counts.reduce(0, +) - total
        let rebalances = max(1, first.statistics.snapshot.revocations + second.statistics.snapshot.revocations)
        #expect(twice <= 2 * 50 * rebalances, "\(twice) handled more than once over \(rebalances) rebalance(s)")
    }
}
