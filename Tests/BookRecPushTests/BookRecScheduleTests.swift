import BookRecPush
import DownstreamSimulation
import Foundation
import Kafka
import Logging
import Metrics
import Redis
import ServiceLifecycle
import TestSupport
import Testing

@testable import PrewarmRuntime

@Suite("push-producer's schedule", .closesResources)
struct BookRecScheduleTests {
    let utc = TimeZone(identifier: "UTC")!

    func date(_ fixture: PushFixture, hour: Int, minute: Int) -> Date {
        var parts = DateComponents()
        parts.year = Int(fixture.day.prefix(4))
        parts.month = Int(fixture.day.dropFirst(4).prefix(2))
        parts.day = Int(fixture.day.dropFirst(6).prefix(2))
        parts.hour = hour
        parts.minute = minute
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = utc
        return calendar.date(from: parts)!
    }

    func scheduler(_ fixture: PushFixture, topic: String, producer: KafkaProducer) -> Scheduler {
        let jobs = fixture.jobs.scheduled(topic: topic)
        let scheduler = Scheduler(
            jobs: jobs, timeZone: utc,
            runs: JobRuns(
                redis: fixture.redis, settings: JobRunSettings(checkEvery: .seconds(3600)), owner: "test",
                logger: Logger(label: "test"), alerts: fixture.alerts),
            producer: producer, alerts: fixture.alerts, logger: Logger(label: "test"),
            metricsFactory: NOOPMetricsHandler.instance)
        // The scheduler works the runs its checks start; its own checks wait an hour.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [scheduler], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        closeAfterTest {
            await group.triggerGracefulShutdown()
            _ = await running.result
        }
        return scheduler
    }

    @Test("a missed hour inside the catch-up window is pushed once; outside it, skipped and alerted")
    func catchUp() async throws {
        var behaviour = DownstreamSimulator.Behaviour()
        behaviour.latency = "1ms"
        behaviour.experimentShare = 1
        let fixture = try await PushFixture.make(behaviour: behaviour)
        try await fixture.db.addUsers(1...30, task: fixture.finished, hour: 21)
        try await fixture.db.addUsers(31...60, task: fixture.finished, hour: 22)
        try await fixture.prewarm((1...60).map { Int64($0) })
        let batches = try await TestEnvironment.createTopic("book-rec.batches", partitions: 1)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        closeAfterTest { await producer.close() }
        let scheduler = scheduler(fixture, topic: batches, producer: producer)
        guard let push = scheduler.jobs.first(where: { $0.name == BookRecJobs.pushJob }) else {
            Issue.record("no push job")
            return
        }

        // An hour comes after its day's pre-warm: it waits for it while it runs (the
        // scheduler's tests show the wait).
        #expect(push.after?.job == BookRecJobs.prewarmJob)
        #expect(push.after?.period(fixture.slot(21)) == fixture.day)
        #expect(push.after?.atMost == fixture.options.catchUpWindow)

        // Every pod was down at 21:00; one starts at 21:20, inside the 30 minutes.
        try await scheduler.check(push, now: date(fixture, hour: 21, minute: 20))
        let produced = try await TestEnvironment.read(batches, count: 1)
        for message in produced { _ = try await fixture.jobs.work(try JobBatch.decode(message)) }
        let pushes = try await TestEnvironment.read(fixture.topic, count: 30)
        #expect(Set(try pushes.map { try PushSeen.decode($0).userID }) == Set((1...30).map { Int64($0) }))
        #expect(try await scheduler.runs.progress(job: push.name, period: fixture.slot(21))?.batchesProduced == 1)
        // Later checks (this pod or a restarted one) start nothing more for that hour.
        try await scheduler.check(push, now: date(fixture, hour: 21, minute: 25))
        #expect(try await scheduler.runs.progress(job: push.name, period: fixture.slot(21))?.attempt == 1)
        #expect(try await scheduler.runs.progress(job: push.name, period: fixture.slot(21))?.batchesProduced == 1)

        // The 22:00 hour noticed at 22:45: too late to push in the night. Skipped, alerted.
        try await scheduler.check(push, now: date(fixture, hour: 22, minute: 45))
        #expect(try await scheduler.runs.progress(job: push.name, period: fixture.slot(22))?.state == .skipped)
        try await eventually("the skipped hour to be alerted") {
            try await Alerts.recent(fixture.redis, count: 200).contains {
                $0.kind == "job-run-missed" && $0.details["period"] == fixture.slot(22)
            }
        }
        #expect(try await fixture.counts(BookRecJobs.pushJob, fixture.slot(22)).isEmpty, "no user of 22:00 pushed")
    }
}
