import Foundation
import Kafka
import Logging
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import ServiceLifecycle
import TestSupport
import Testing

@Suite("Consumer-group operations: lag, offset reset, DLQ replay", .closesResources)
struct GroupOperationsTests: LoopTesting {
    func operations() throws -> GroupOperations {
        GroupOperations(
            bootstrapServers: try TestEnvironment.kafkaBootstrap, properties: Self.fastGroup,
            logger: Logger(label: "test.ops"))
    }

    @Test("lag is the high watermark less the committed offset, per partition")
    func lag() async throws {
        let topic = try await TestEnvironment.createTopic(partitions: 3)
        try await produce(topic, (0..<90).map { "{\"id\": \($0)}" })
        let group = TestEnvironment.uniqueName("group")
        let admin = try KafkaAdmin(bootstrapServers: try TestEnvironment.kafkaBootstrap)
        let p0 = KafkaTopicPartition(topic, 0)
        let high0 = try await admin.watermarks(p0).high
        try await admin.alterCommittedOffsets(group: group, offsets: [p0: high0 - 4])
        await admin.close()

        let lags = try await operations().lag(group: group, topics: [topic])
        #expect(lags.map(\.partition) == (0..<3).map { KafkaTopicPartition(topic, Int32($0)) })
        #expect(lags[0].committed == high0 - 4)
        #expect(lags[0].lag == 4)
        #expect(lags.dropFirst().allSatisfy { $0.committed == nil && $0.lag == $0.high })
        #expect(lags.reduce(0) { $0 + $1.lag } == 90 - high0 + 4)
        await #expect(throws: UnknownTopic.self) {
            _ = try await operations().lag(group: group, topics: ["no.such.topic.v1"])
        }
    }

    @Test("status's lag: every consumer group of the catalog, each over all the partitions of its topic")
    func catalogLag() async throws {
        let lag = try await operations().catalogLag()
        for spec in TopicCatalog.sources {
            guard let group = spec.consumerGroup else { continue }
            #expect(lag[group]?.count == spec.partitions, "\(group): \(lag[group]?.count ?? 0) partitions")
        }
        #expect(lag.count == TopicCatalog.sources.filter { $0.consumerGroup != nil }.count)
    }

    func runUntil(
        topic: String, group: String, redis: RedisConnection, prefix: String,
        _ condition: @escaping () async throws -> Bool
    ) async throws {
        let worker = try loop(topic: topic, group: group, handler: RedisWriter(redis: redis, prefix: prefix))
        let (services, task) = running(worker)
        try await eventually(timeout: .seconds(60), "the worker to finish", condition)
        await services.triggerGracefulShutdown()
        try await task.value
    }
}
