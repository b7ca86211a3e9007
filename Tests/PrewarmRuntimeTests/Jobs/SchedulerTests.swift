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

/// Counts the runs a job's body saw.
actor RunLog {
    private(set) var runs: [JobRunInfo] = []
    func add(_ run: JobRunInfo) { runs.append(run) }
}

/// A pod's scheduler, in process, on the shared Redis.
struct Pod {
    let scheduler: Scheduler
    let group: ServiceGroup
    let task: Task<Void, any Error>

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

@Suite("Scheduler against Redis: races, catch-ups, take-overs", .closesResources)
struct SchedulerTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!

    func date(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

    private func pod(
        _ jobs: [ScheduledJob], redis: any RedisClient, name: String = "pod", lease: Duration = .seconds(10),
        check: Duration = .seconds(3600), producer: KafkaProducer? = nil,
        metrics: any MetricsFactory = NOOPMetricsHandler.instance
    ) -> Pod {
        let alerts = Alerts(worker: name, logger: Logger(label: "test"), metricsFactory: metrics, redis: redis)
        let scheduler = Scheduler(
            jobs: jobs, timeZone: shanghai,
            runs: JobRuns(
                redis: redis, settings: JobRunSettings(lease: lease, checkEvery: check), owner: name,
                logger: Logger(label: "test.\(name)"), alerts: alerts),
            producer: producer, alerts: alerts, logger: Logger(label: "test.\(name)"), metricsFactory: metrics,
            retryAlertAfter: .seconds(1))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [scheduler], logger: Logger(label: "test")))
        let pod = Pod(scheduler: scheduler, group: group, task: Task { try await group.run() })
        closeAfterTest { try? await pod.stop() }
        return pod
    }

    private func connect() async throws -> RedisConnection {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        return redis
    }

    private func recording(
        _ name: String, _ log: RunLog, schedule: Schedule = .daily(hour: 0, minute: 1),
        catchUp: ScheduledJob.CatchUp = .once
    ) -> ScheduledJob {
        ScheduledJob(name: name, schedule: schedule, catchUp: catchUp, work: .inPlace { run, _ in await log.add(run) })
    }

    @Test("at a scheduled fire, of several pods exactly one runs the job, and the run is recorded done")
    func scheduledRace() async throws {
        let redis = try await connect()
        let job = TestEnvironment.uniqueName("job")
        let log = RunLog()
        let pods = (0..<3).map { pod([recording(job, log)], redis: redis, name: "pod-\($0)") }
        let fire = Date()
        let claims = await withTaskGroup(of: JobRuns.Claim?.self) { group in
            for pod in pods { group.addTask { await pod.scheduler.fire(pod.scheduler.jobs[0], at: fire) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(claims.filter { if case .started = $0 { true } else { false } }.count == 1)
        let period = Schedule.daily(hour: 0, minute: 1).period(of: fire, in: shanghai)
        try await eventually("the run to be recorded done") {
            try await pods[0].scheduler.runs.progress(job: job, period: period)?.state == .succeeded
        }
        #expect(await log.runs.count == 1)
        #expect(try await redis.send("EXISTS", JobRuns.doneKey(job: job, period: period)) == .integer(1))
    }

    @Test("a run whose pod died before its finish step: a later check runs the step once, not before two leases")
    func abandonedFinishStep() async throws {
        let redis = try await connect()
        let job = TestEnvironment.uniqueName("job")
        let log = RunLog()
        // At midnight: today's period is always among the two a check looks at.
        let daily = recording(job, log, schedule: .daily(hour: 0, minute: 0), catchUp: .skip)
        let pod = pod([daily], redis: redis)
        let finishes = Tally()
        pod.scheduler.runs.declare(job) { _ in finishes.up() }
        // Today's run, triggered, ends; then its record is put back as a pod that died
        // between the run's end and its finish step leaves it.
        _ = try await pod.scheduler.trigger(job: job)
        try await eventually("the run's finish step") { finishes.count == 1 }
        let period = try #require(await log.runs.first?.period)
        try await eventually("the finish step reported and its lease released") {
            let reported = try await pod.scheduler.runs.progress(job: job, period: period)?.finishReported == true
            let leased = try await redis.send("EXISTS", JobRuns.finishKey(job: job, period: period)) == .integer(1)
            return reported && !leased
        }
        try await redis.send("HDEL", JobRuns.progressKey(job: job, period: period), "finish_reported")
        let ended = try #require(try await pod.scheduler.runs.progress(job: job, period: period)?.finishedAt)

        // Within two finish leases of the run's end, the step is left to its pod.
        try await pod.scheduler.check(daily, now: ended.addingTimeInterval(5))
        try await Task.sleep(for: .milliseconds(300))
        #expect(finishes.count == 1)
        // After them, a check runs it (beside the checks), once.
        try await pod.scheduler.check(daily, now: ended.addingTimeInterval(25))
        try await eventually("the finish step run again") {
            try await pod.scheduler.runs.progress(job: job, period: period)?.finishReported == true
        }
        #expect(finishes.count == 2)
        try await pod.scheduler.check(daily, now: ended.addingTimeInterval(60))
        try await Task.sleep(for: .milliseconds(300))
        #expect(finishes.count == 2)
        #expect(await log.runs.count == 1, "the run itself is not run again")
    }

    /// Two daily jobs, the second `after` the first (same period): the first's run logs
    /// itself once `release` yields, the second's at once; both on one pod.
    private func chained(_ redis: RedisConnection, atMost: Duration) -> (
        first: String, second: String, order: RunLog, release: AsyncStream<Void>.Continuation, pod: Pod
    ) {
        let first = TestEnvironment.uniqueName("first")
        let second = TestEnvironment.uniqueName("second")
        let order = RunLog()
        let release = AsyncStream<Void>.makeStream()
        let daily = Schedule.daily(hour: 0, minute: 1)
        let jobs = [
            ScheduledJob(
                name: first, schedule: daily, catchUp: .skip,
                work: .inPlace { run, _ in
                    for await _ in release.stream { break }
                    await order.add(run)
                }),
            ScheduledJob(
                name: second, schedule: daily, catchUp: .skip,
                after: .init(job: first, period: { $0 }, atMost: atMost),
                work: .inPlace { run, _ in await order.add(run) }),
        ]
        return (first, second, order, release.continuation, pod(jobs, redis: redis))
    }

    @Test("a run that comes after another waits while that one is under way, not when it is done or absent")
    func waitsForTheRunBefore() async throws {
        let redis = try await connect()
        let (first, second, order, release, pod) = chained(redis, atMost: .seconds(60))
        let period = Schedule.daily(hour: 0, minute: 1).period(of: Date(), in: shanghai)

        // The first under way: the second waits for it.
        _ = try await pod.scheduler.trigger(job: first, period: period)
        _ = try await pod.scheduler.trigger(job: second, period: period)
        try await Task.sleep(for: .milliseconds(1500))
        #expect(await order.runs.isEmpty, "the second ran while the first was under way")
        release.yield()
        try await eventually("both to run") { await order.runs.count == 2 }
        #expect(await order.runs.map(\.job) == [first, second])

        // The first done: a second run of the second goes at once.
        _ = try await pod.scheduler.trigger(job: second, period: period, force: true)
        try await eventually("the forced run") { await order.runs.count == 3 }
        // Another period, whose first never ran: no wait either.
        let yesterday = Schedule.daily(hour: 0, minute: 1).period(
            of: Date().addingTimeInterval(-86_400), in: shanghai)
        _ = try await pod.scheduler.trigger(job: second, period: yesterday)
        try await eventually("the run of a period the first never ran") { await order.runs.count == 4 }
    }

    @Test("a run that comes after another goes on after waiting its longest, alerted once; a forced one does not wait")
    func waitsAtMost() async throws {
        let redis = try await connect()
        let (first, second, order, release, pod) = chained(redis, atMost: .seconds(2))
        defer { release.finish() }
        let period = Schedule.daily(hour: 0, minute: 1).period(of: Date(), in: shanghai)
        _ = try await pod.scheduler.trigger(job: first, period: period)
        let started = ContinuousClock.now
        _ = try await pod.scheduler.trigger(job: second, period: period)
        try await eventually("the second to give up waiting") { await order.runs.count == 1 }
        #expect(ContinuousClock.now - started >= .seconds(2), "it waited its longest first")
        try await eventually("the alert") {
            try await Alerts.recent(redis, count: 200).contains {
                $0.kind == "job-started-before-dependency" && $0.details["job"] == second
            }
        }
        // An operator's forced run goes at once, the first still under way.
        let forced = ContinuousClock.now
        _ = try await pod.scheduler.trigger(job: second, period: period, force: true)
        try await eventually("the forced run") { await order.runs.count == 2 }
        #expect(ContinuousClock.now - forced < .seconds(2))
        #expect(
            try await Alerts.recent(redis, count: 200).filter {
                $0.kind == "job-started-before-dependency" && $0.details["job"] == second
            }.count == 1)
    }

    @Test("a run its winner failed (an error in its body) gets no finish step from a later check")
    func failedRunNoFinishStep() async throws {
        struct Broken: Error {}
        let redis = try await connect()
        let job = TestEnvironment.uniqueName("job")
        let failing = ScheduledJob(
            name: job, schedule: .daily(hour: 0, minute: 0), catchUp: .skip, work: .inPlace { _, _ in throw Broken() })
        let pod = pod([failing], redis: redis)
        let finishes = Tally()
        pod.scheduler.runs.declare(job) { _ in finishes.up() }
        let period = failing.schedule.period(of: Date(), in: shanghai)
        _ = try await pod.scheduler.trigger(job: job, period: period)
        try await eventually("the run to be recorded failed") {
            try await pod.scheduler.runs.progress(job: job, period: period)?.state == .failed
        }
        let ended = try #require(try await pod.scheduler.runs.progress(job: job, period: period)?.finishedAt)
        try await pod.scheduler.check(failing, now: ended.addingTimeInterval(25))
        try await Task.sleep(for: .milliseconds(300))
        #expect(finishes.count == 0)
        #expect(try await pod.scheduler.runs.progress(job: job, period: period)?.finishReported == false)
    }

    @Test("all pods down over a fire: the next start runs the latest missed period once, and not the ones before it")
    func missedFireCaughtUpOnce() async throws {
        let redis = try await connect()
        let job = TestEnvironment.uniqueName("job")
        let log = RunLog()
        let hourly = recording(job, log, schedule: .hourly(minute: 0))
        let restarted = pod([hourly], redis: redis)
        // 10:30 in Shanghai: the 10:00 run was missed (and 09:00 and everything before).
        let now = date("2026-11-21T02:30:00Z")
        try await restarted.scheduler.check(hourly, now: now)
        try await eventually("the caught-up run to finish") { await log.runs.count == 1 }
        #expect(await log.runs.first?.period == "2026112110")
        #expect(await log.runs.first?.due == date("2026-11-21T02:00:00Z"))
        // Later checks, by this pod or another, run nothing more.
        try await restarted.scheduler.check(hourly, now: now.addingTimeInterval(60))
        try await pod([hourly], redis: redis, name: "other").scheduler.check(hourly, now: now.addingTimeInterval(90))
        try await Task.sleep(for: .milliseconds(300))
        #expect(await log.runs.map(\.period) == ["2026112110"])
        #expect(try await restarted.scheduler.runs.progress(job: job, period: "2026112109") == nil)
    }

    @Test("catch-up within a window: a late start inside it runs; outside it the period is skipped and alerted")
    func catchUpWindow() async throws {
        let redis = try await connect()
        let log = RunLog()
        let inside = recording(
            TestEnvironment.uniqueName("job"), log, schedule: .hourly(minute: 0), catchUp: .within(.seconds(1800)))
        try await pod([inside], redis: redis).scheduler.check(inside, now: date("2026-11-21T02:20:00Z"))
        try await eventually("the run inside its window") { await log.runs.count == 1 }

        let outsideName = TestEnvironment.uniqueName("job")
        let outside = recording(outsideName, log, schedule: .hourly(minute: 0), catchUp: .within(.seconds(1800)))
        let late = pod([outside], redis: redis)
        try await late.scheduler.check(outside, now: date("2026-11-21T02:45:00Z"))
        try await Task.sleep(for: .milliseconds(300))
        #expect(await log.runs.count == 1, "nothing sent in the middle of the night")
        #expect(try await late.scheduler.runs.progress(job: outsideName, period: "2026112110")?.state == .skipped)
        try await eventually("the skip to be alerted") {
            try await Alerts.recent(redis, count: 50).contains {
                $0.kind == "job-run-missed" && $0.details["job"] == outsideName
            }
        }
    }

    @Test("a Redis outage at fire time is retried with backoff and counted; the run starts once Redis is back")
    func redisErrorAtFire() async throws {
        let server = try PrivateRedisServer()
        try await server.start()
        let redis = try await RedisConnection.connect(server.configuration)
        closeAfterTest { await redis.close() }
        try await server.stop()
        let metrics = TestMetrics()
        let log = RunLog()
        let job = recording(TestEnvironment.uniqueName("job"), log)
        let pod = pod([job], redis: redis, metrics: metrics)
        let firing = Task { await pod.scheduler.fire(job, at: Date()) }
        try await eventually("a failed claim to be counted") {
            (try? metrics.expectCounter("prewarm_job_fire_errors_total", [("job", job.name)]).totalValue) ?? 0 >= 1
        }
        try await server.start()
        let claim = await firing.value
        guard case .started = claim else {
            Issue.record("the fire did not start its run once Redis was back: \(String(describing: claim))")
            return
        }
        try await eventually("the run to happen") { await log.runs.count == 1 }
    }

    @Test("a run whose winner stopped renewing is taken over from its recorded progress, producing no batch twice")
    func takeOver() async throws {
        let redis = try await connect()
        let topic = try await TestEnvironment.createTopic(partitions: 1)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        closeAfterTest { await producer.close() }
        let job = TestEnvironment.uniqueName("job")
        let fanOut = ScheduledJob(
            name: job, schedule: .daily(hour: 0, minute: 1), catchUp: .skip,
            work: .fanOut(FanOut(topic: topic, batchSize: 10, source: CountingSource(count: 95), handler: NoBatches())))
        // The first winner claimed the run, produced three batches and died (it never renews).
        // Its batches are sent before its claim: on a loaded machine three deliveries can
        // outlast the 2 s lease, and its records (Redis only) must land inside it.
        for batch in 0..<3 {
            try await producer.send(
                try JobBatch(
                    job: job, period: "20261121", attempt: 1, batch: batch, batchCount: 10,
                    ids: (Int64(batch * 10 + 1)...Int64(batch * 10 + 10)).map { $0 }
                ).message(topic: topic))
        }
        let dead = JobRuns(
            redis: redis, settings: JobRunSettings(lease: .seconds(2)), owner: "dead", logger: Logger(label: "t"),
            alerts: nil)
        guard
            case .started(let lease) = try await dead.claim(
                job: job, period: "20261121", due: Date(), force: false, deadline: nil)
        else {
            Issue.record("the first claim did not start")
            return
        }
        for batch in 0..<3 {
            try await lease.record([
                ("cursor", batch * 10 + 10), ("batches_produced", batch + 1), ("items_produced", batch * 10 + 10),
            ])
        }
        let survivor = pod([fanOut], redis: redis, name: "survivor", lease: .seconds(2), producer: producer)
        try await survivor.scheduler.takeOver()
        #expect(
            try await survivor.scheduler.runs.progress(job: job, period: "20261121")?.takeovers == 0, "still leased")
        try await Task.sleep(for: .milliseconds(2200))
        try await survivor.scheduler.takeOver()
        try await eventually("the survivor to finish the fan-out") {
            try await survivor.scheduler.runs.progress(job: job, period: "20261121")?.state == .fannedOut
        }
        let progress = try #require(try await survivor.scheduler.runs.progress(job: job, period: "20261121"))
        #expect(progress.takeovers == 1)
        #expect(progress.batchesTotal == 10 && progress.itemsProduced == 95)
        let batches = try await TestEnvironment.read(topic, count: 10).map { try JobBatch.decode($0) }
        #expect(batches.map(\.batch).sorted() == Array(0..<10), "each batch once")
        #expect(Set(batches.flatMap(\.ids)) == Set(1...95), "every id")
    }
}

/// The ids 1...count.
struct CountingSource: FanOutSource {
    let count: Int
    func count(for run: JobRunInfo) async throws -> Int? { count }
    func page(for run: JobRunInfo, after cursor: Int64, limit: Int) async throws -> [Int64] {
        let first = max(cursor + 1, 1)
        guard first <= Int64(count) else { return [] }
        return Array(first...min(first + Int64(limit) - 1, Int64(count)))
    }
}
