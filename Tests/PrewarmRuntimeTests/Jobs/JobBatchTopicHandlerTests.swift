import CoreMetrics
import Foundation
import Kafka
import Logging
import MetricsTestKit
import Redis
import ServiceLifecycle
import TestSupport
import Testing

@testable import PrewarmRuntime

/// Counts each id it is handed in a Redis hash, and each call.
struct IdCounter: JobBatchHandler {
    let redis: any RedisClient
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
    @Test(
        "every batch of a run is worked once and the run is marked done once; a replayed batch is skipped",
        arguments: RedisTopology.allCases)
    func fanOutToConsumers(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let topic = try await TestEnvironment.createTopic(partitions: 3)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        closeAfterTest { await producer.close() }
        let job = TestEnvironment.uniqueName("job")
        let prefix = TestEnvironment.uniqueName("ids")
        let alerts = Alerts(worker: "test", logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance)
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "pod", logger: Logger(label: "test"), alerts: alerts)
        let jobs = [
            ScheduledJob(
                name: job, schedule: .daily(hour: 2, minute: 0), catchUp: .skip,
                work: .fanOut(
                    FanOut(
                        topic: topic, batchSize: 40, source: CountingSource(count: 1000), concurrency: 3,
                        handler: IdCounter(redis: redis, prefix: prefix))))
        ]
        let scheduler = Scheduler(
            jobs: jobs, timeZone: TimeZone(identifier: "Asia/Shanghai")!, runs: runs, producer: producer,
            alerts: alerts, logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance)
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
                routes: ScheduledJob.batchRoutes(jobs, runs: runs),
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
        #expect(progress.state == .partial, "20 items failed on their own: the run is partial, not succeeded")
        // 1,000 ids in batches of at most 40 over 3 partitions: 27 batches of 37 or 38.
        #expect(progress.batchesTotal == 27 && progress.batchesDone == 27 && progress.batchesFailed == 0)
        #expect(progress.itemsDone == 980 && progress.itemsFailed == 20, "items that failed on their own are counted")
        let counts = try await redis.send("HVALS", prefix).array?.compactMap(\.integer) ?? []
        #expect(counts.count == 1000 && counts.allSatisfy { $0 == 1 }, "every id worked once")
        // Batch i on partition i mod 3, and a batch count that 3 divides: the same share each.
        let admin = try KafkaAdmin(bootstrapServers: bootstrap)
        let marks = try await admin.watermarks((0..<3).map { KafkaTopicPartition(topic, Int32($0)) })
        await admin.close()
        #expect((0..<3).map { marks[KafkaTopicPartition(topic, Int32($0))]?.high } == [9, 9, 9], "spread evenly")

        // A batch delivered again (a replay) is recognised and not worked again.
        let calls = try await redis.send("GET", prefix + ":calls").integer
        try await producer.send(
            try JobBatch(job: job, period: "20261121", attempt: 1, batch: 3, batchCount: 27, ids: [115, 116])
                .message(topic: topic))
        try await Task.sleep(for: .seconds(2))
        #expect(try await redis.send("GET", prefix + ":calls").integer == calls)
        #expect(try await runs.progress(job: job, period: "20261121")?.batchesDone == 27)
        await services.triggerGracefulShutdown()
        try await running.value
    }

    @Test("a batch goes to its job's declared handler; a batch of a job not declared on the topic is bad input")
    func routedByJob() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "pod", logger: Logger(label: "test"), alerts: nil)
        let (first, second) = (TestEnvironment.uniqueName("ids"), TestEnvironment.uniqueName("ids"))
        let handler = JobBatchTopicHandler(
            runs: runs,
            handlers: [
                "job-a": IdCounter(redis: redis, prefix: first), "job-b": IdCounter(redis: redis, prefix: second),
            ],
            concurrency: 2)
        func delivered(_ job: String, _ ids: [Int64], offset: Int64) -> Decoded<JobBatch> {
            Decoded(
                value: JobBatch(job: job, period: "p", attempt: 1, batch: Int(offset), batchCount: 3, ids: ids),
                message: KafkaMessage(topic: "batches", partition: 0, offset: offset, key: nil, value: []))
        }
        let error = await #expect(throws: InvalidItems.self) {
            try await handler.handle([
                delivered("job-a", [1, 2], offset: 0), delivered("job-c", [3], offset: 1),
                delivered("job-b", [4], offset: 2),
            ])
        }
        #expect(error?.errors.keys.sorted() == [1], "only the undeclared job's batch is refused")
        #expect(error?.errors[1]?.errorClass == "UnknownJob")
        #expect(try await redis.send("HKEYS", first).array?.compactMap(\.string).sorted() == ["1", "2"])
        #expect(try await redis.send("HKEYS", second).array?.compactMap(\.string) == ["4"])
    }
}

@Suite("A run's finish step after a crash", .closesResources)
struct FinishStepTests {
    @Test("the pod that recorded a run's last batch died in its finish step: the batch delivered again runs it, once")
    func finishStepAfterCrash() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let job = TestEnvironment.uniqueName("job")
        let period = "20261122"
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "pod", logger: Logger(label: "test"), alerts: nil)
        let hooks = Tally()
        runs.declare(job) { progress in
            #expect(progress.state == .succeeded && progress.batchesDone == 2)
            hooks.up()
        }
        // A run of two batches; both recorded by a pod that then died in the finish step the
        // second record began: the run is over, its step not, and that pod's lease on the
        // step (1 s here) is left to expire.
        guard
            case .started(let lease) = try await runs.claim(
                job: job, period: period, due: Date(), force: false, deadline: nil)
        else {
            Issue.record("the run did not start")
            return
        }
        #expect(try await lease.finishFanOut(batches: 2, items: 4) == nil)
        let batches = (0..<2).map {
            JobBatch(job: job, period: period, attempt: lease.attempt, batch: $0, batchCount: 2, ids: [1, 2])
        }
        for batch in batches {
            _ = try await runs.recordBatch(batch, itemsDone: 2, itemsFailed: 0, failed: false)
        }
        _ = try await RedisLease.acquire(
            JobRuns.finishKey(job: job, period: period), ttl: .seconds(1), on: redis, owner: "dead-pod")
        let ended = try #require(try await runs.progress(job: job, period: period))
        #expect(ended.state == .succeeded && !ended.finishReported)

        // Both batches delivered again at once, to two consumers of the group: neither is
        // worked again, and the step runs once, after the dead pod's lease expired.
        let prefix = TestEnvironment.uniqueName("ids")
        let handler = JobBatchTopicHandler(
            runs: runs, handlers: [job: IdCounter(redis: redis, prefix: prefix)], concurrency: 1)
        let delivered = batches.map { batch in
            Decoded(
                value: batch,
                message: KafkaMessage(topic: "batches", partition: 0, offset: Int64(batch.batch), key: nil, value: []))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for message in delivered { group.addTask { try await handler.handle([message]) } }
            try await group.waitForAll()
        }
        #expect(hooks.count == 1, "the finish step ran once")
        #expect(try await runs.progress(job: job, period: period)?.finishReported == true)
        #expect(try await redis.send("EXISTS", prefix + ":calls").integer == 0, "no batch worked again")

        // Delivered once more (an offset reset): the step has ended and is not run again.
        try await handler.handle(delivered)
        #expect(hooks.count == 1)
    }
}

@Suite("A run's outcome, settled by its finish step", .closesResources)
struct RunOutcomeTests {
    /// Moves `count` failed items of the run to done, as a product's finish hook does.
    static let recover = RedisScript(
        name: "test-recover", source: JobRuns.recover + "\nrecover(KEYS[1], tonumber(ARGV[1]))\nreturn 1")

    @Test("a hook that recovers every failed item makes the run succeeded; one that leaves some, partial and alerted")
    func hookSettlesTheOutcome() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        let metrics = TestMetrics()
        let alerts = Alerts(worker: "test", logger: Logger(label: "test"), metricsFactory: metrics, redis: redis)
        closeAfterTest { await alerts.close() }
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "pod", logger: Logger(label: "test"), alerts: alerts,
            metricsFactory: metrics)
        for (recovered, expected) in [(4, JobRunState.succeeded), (1, .partial)] {
            let job = TestEnvironment.uniqueName("job")
            let period = "20261123"
            runs.declare(job) { progress in
                #expect(progress.state == .partial && progress.itemsFailed == 4)
                _ = try await redis.run(
                    Self.recover, keys: [JobRuns.progressKey(job: job, period: period)], arguments: [recovered])
            }
            guard
                case .started(let lease) = try await runs.claim(
                    job: job, period: period, due: Date(), force: false, deadline: nil)
            else {
                Issue.record("the run did not start")
                return
            }
            _ = try await lease.finishFanOut(batches: 1, items: 10)
            let batch = JobBatch(job: job, period: period, attempt: 1, batch: 0, batchCount: 1, ids: Array(1...10))
            #expect(
                try await runs.recordBatch(batch, itemsDone: 6, itemsFailed: 4, failed: false)
                    == .recorded(finished: .partial))
            #expect(try await runs.finishWhenFree(job: job, period: period))
            let run = try #require(try await runs.progress(job: job, period: period))
            #expect(run.state == expected && run.finishReported && run.settledAt != nil)
            #expect(run.itemsFailed == 4 - recovered && run.itemsDone == 6 + recovered)
            #expect(
                try await redis.send("EXISTS", JobRuns.doneKey(job: job, period: period))
                    == .integer(expected == .succeeded ? 1 : 0))
            #expect(
                try metrics.expectCounter("prewarm_job_runs_total", [("job", job), ("outcome", expected.rawValue)])
                    .totalValue == 1)
            if expected == .partial {
                try await eventually("the partial run's alert") {
                    try await Alerts.recent(redis, count: 100).contains {
                        $0.kind == "job-partial" && $0.details["job"] == job && $0.details["items_failed"] == "3"
                    }
                }
            }
        }
    }
}
