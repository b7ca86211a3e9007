import CoreMetrics
import Foundation
import Kafka
import Logging
import Redis
import ServiceLifecycle
import TestSupport
import Testing

@testable import PrewarmRuntime

/// Counts each id it is handed in a Redis hash, and each call.
struct IdCounter: JobBatchHandler {
    let redis: RedisConnection
    let prefix: String

    func work(_ batch: JobBatch) async throws -> BatchResult {
        _ = try await redis.pipeline(
            batch.ids.map { RedisCommand("HINCRBY", prefix, $0, 1) } + [RedisCommand("INCR", prefix + ":calls")])
        let failed = batch.ids.filter { $0 % 50 == 0 }.count
        return BatchResult(itemsDone: batch.ids.count - failed, itemsFailed: failed)
    }
}

@Suite("Fan-out batches worked by a consumer group", .closesResources)
struct JobBatchRouteTests: LoopTesting {
    @Test("every batch of a run is worked once and the run is marked done once; a replayed batch is skipped")
    func fanOutToConsumers() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let topic = try TestEnvironment.createTopic(partitions: 3)
        try TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        closeAfterTest { await producer.close() }
        let job = TestEnvironment.uniqueName("job")
        let prefix = TestEnvironment.uniqueName("ids")
        let alerts = Alerts(worker: "test", logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance)
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "pod", logger: Logger(label: "test"), alerts: alerts)
        let scheduler = Scheduler(
            jobs: [
                ScheduledJob(
                    name: job, schedule: .daily(hour: 2, minute: 0), catchUp: .skip,
                    work: .fanOut(FanOut(topic: topic, batchSize: 40, source: CountingSource(count: 1000))))
            ], timeZone: TimeZone(identifier: "Asia/Shanghai")!, runs: runs, producer: producer, alerts: alerts,
            logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance)
        let bootstrap = try TestEnvironment.kafkaBootstrap
        let group = TestEnvironment.uniqueName("group")
        let consumers = try (0..<2).map { _ in
            ConsumeLoop(
                configuration: ConsumeLoopConfiguration(
                    groupID: group, maxBatchMessages: 7, maxBatchWait: .milliseconds(50)),
                consumer: try KafkaConsumer(
                    configuration: KafkaConsumerConfiguration(
                        groupID: group, bootstrapServers: bootstrap, properties: Self.fastGroup)),
                deadLetterProducer: producer,
                routes: [
                    TopicRoute(
                        batchesOfTopic: topic, runs: runs, concurrency: 3,
                        handler: IdCounter(redis: redis, prefix: prefix))
                ],
                logger: Logger(label: "test"))
        }
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [scheduler] + consumers, logger: Logger(label: "test")))
        let running = Task { try await services.run() }
        guard case .accepted = try await scheduler.trigger(job: job, period: "20261121") else {
            Issue.record("the trigger did not start the run")
            return
        }
        try await eventually(timeout: .seconds(90), "the run to finish") {
            try await runs.progress(job: job, period: "20261121")?.isFinished == true
        }
        let progress = try #require(try await runs.progress(job: job, period: "20261121"))
        #expect(progress.state == "succeeded")
        #expect(progress.batchesTotal == 25 && progress.batchesDone == 25 && progress.batchesFailed == 0)
        #expect(progress.itemsDone == 980 && progress.itemsFailed == 20, "items that failed on their own are counted")
        let counts = try await redis.send("HVALS", prefix).array?.compactMap(\.integer) ?? []
        #expect(counts.count == 1000 && counts.allSatisfy { $0 == 1 }, "every id worked once")

        // A batch delivered again (a replay) is recognised and not worked again.
        let calls = try await redis.send("GET", prefix + ":calls").integer
        try await producer.send(
            try JobBatch(job: job, period: "20261121", attempt: 1, batch: 3, batchCount: 25, ids: [121, 122])
                .message(topic: topic))
        try await Task.sleep(for: .seconds(2))
        #expect(try await redis.send("GET", prefix + ":calls").integer == calls)
        #expect(try await runs.progress(job: job, period: "20261121")?.batchesDone == 25)
        await services.triggerGracefulShutdown()
        try await running.value
    }
}
