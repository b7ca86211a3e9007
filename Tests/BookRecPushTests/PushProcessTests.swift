import BookRecPush
import DownstreamSimulation
import Foundation
import Kafka
import Logging
import PrewarmConfiguration
import PrewarmFixtures
import PrewarmRuntime
import Redis
import TestSupport
import Testing

/// The real executable: two push-producer pods against the simulated services, one of them
/// killed between producing pushes and marking them sent. Redis database 12 of its own.
@Suite("push-producer processes", .closesResources, .serialized)
struct PushProcessTests {
    struct Pod {
        let process: TestProcess
        let admin: URL
    }

    private func start(_ environment: [String: String]) async throws -> Pod {
        let port = try TestEnvironment.freePort()
        let process = try TestProcess.start(
            "push-producer", [],
            environment: environment.merging([
                "PREWARM_ADMIN_PORT": String(port), "PREWARM_ADMIN_HOST": "127.0.0.1", "PREWARM_ADMIN_TOKEN": "t0ken",
                "PREWARM_LOG_LEVEL": "info",
            ]) { $1 })
        closeAfterTest { await process.stop() }
        let admin = URL(string: "http://127.0.0.1:\(port)")!
        try await process.waitUntilAnswering(admin, "readyz")
        return Pod(process: process, admin: admin)
    }

    /// What every test here starts from: Redis database 12 emptied, a schema of its own, the
    /// simulated services (everyone in the experiment) and a day of its own, and the pods'
    /// environment pointing at them (`extra` on top).
    struct Setup {
        let redis: RedisConnection
        let db: PushDatabase
        let services: SimulatedServices
        let day: String
        let environment: [String: String]
    }

    private func setUp(latency: String, serviceLatency: [String: String] = [:], extra: [String: String] = [:])
        async throws -> Setup
    {
        let redis = try await TestEnvironment.emptyRedisDatabase(12)
        let db = try await PushDatabase.make()
        var behaviour = DownstreamSimulator.Behaviour()
        behaviour.latency = latency
        behaviour.serviceLatency = serviceLatency
        behaviour.experimentShare = 1
        let services = try await SimulatedServices.start(behaviour)
        let day = String(
            format: "%04d%02d%02d", Int.random(in: 2100...2999), Int.random(in: 1...12), Int.random(in: 1...28))
        let environment = db.workerEnvironment.merging(
            [
                "PREWARM_REDIS_DB": "12",
                "PREWARM_PUSH_AB_URL": services.base.appendingPathComponent("ab").absoluteString,
                "PREWARM_PUSH_REC_URL": services.base.appendingPathComponent("rec").absoluteString,
                "PREWARM_PUSH_MATERIAL_URL": services.base.appendingPathComponent("material").absoluteString,
                "PREWARM_TIMEZONE": "UTC", "PREWARM_JOB_LEASE_S": "2", "PREWARM_JOB_CHECK_S": "1",
                "PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",

                "PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
            ].merging(extra) { $1 }
        ) { $1 }
        return Setup(redis: redis, db: db, services: services, day: day, environment: environment)
    }

    /// The pushes of `slot` on the push topic, read until every one of `users` has one and
    /// then two seconds more (so a second push would be seen).
    private func pushes(slot: String, users: Set<Int64>) async throws -> [PushSeen] {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: TestEnvironment.uniqueName("push-reader"), bootstrapServers: TestEnvironment.kafkaBootstrap))
        try await consumer.subscribe([TopicCatalog.bookRecommendationPush.name])
        var seen: [PushSeen] = []
        func poll() async throws {
            for message in try await consumer.poll(maxMessages: 500, timeoutMilliseconds: 100).messages {
                if let push = try? PushSeen.decode(message), push.slot == slot { seen.append(push) }
            }
        }
        try await eventually(timeout: .seconds(90), "a push for every user of \(slot)") {
            try await poll()
            return Set(seen.map(\.userID)).isSuperset(of: users)
        }
        let until = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < until { try await poll() }
        await consumer.close()
        return seen
    }

    @Test(
        "two pods, one killed between produce and mark: every user pushed, never two different pushes, a forced re-run sends nothing",
        .enabled(
            if: TestEnvironment.broker.evictsDeadMembers, "kills a consumer: needs a broker that evicts dead members")
    )
    func killedBetweenProduceAndMark() async throws {
        let setup = try await setUp(
            latency: "2ms", extra: ["PREWARM_PUSH_BATCH_SIZE": "25", "PREWARM_PUSH_BATCH_CONCURRENCY": "2"])
        let (redis, db, services, day, environment) = (
            setup.redis, setup.db, setup.services, setup.day, setup.environment
        )
        try await db.addUsers(1...400, task: "04-026-\(day)-r0gdua", hour: 23)
        try await db.addUsers(301...500, task: "04-026-\(day)-qk79ub", hour: 23)
        let doomed = try await start(environment.merging(["PREWARM_PUSH_FAILPOINT_AFTER_PUSHES": "60"]) { $1 })
        let survivor = try await start(environment)
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "test", logger: Logger(label: "test"), alerts: nil)

        // The pre-warm of the day, triggered by hand, worked by both pods.
        let prewarm = try await adminRequest(
            survivor.admin, "POST", "jobs/book-rec-prewarm/trigger?period=\(day)", token: "t0ken")
        #expect(prewarm.status == 202, "\(prewarm.body)")
        try await eventually(timeout: .seconds(90), "the pre-warm to succeed") {
            try await runs.progress(job: "book-rec-prewarm", period: day)?.state == .succeeded
        }
        #expect(try await runs.progress(job: "book-rec-prewarm", period: day)?.itemsDone == 500)
        #expect(services.simulator.stats.services["ab"]?.calls == 500, "each user pre-warmed once, by one pod")

        // 23:00: one pod dies after producing 60 pushes, before marking them sent.
        let slot = day + "23"
        let push = try await adminRequest(
            doomed.admin, "POST", "jobs/book-rec-push/trigger?period=\(slot)", token: "t0ken")
        #expect(push.status == 202, "\(push.body)")
        try await eventually(timeout: .seconds(30), "the failpoint to kill the pod") {
            doomed.process.child.exitStatus() == 128 + SIGKILL
        }
        try await eventually(timeout: .seconds(90), "the hour to finish on the survivor") {
            try await runs.progress(job: "book-rec-push", period: slot)?.state == .succeeded
        }
        let everyone = Set((1...500).map { Int64($0) })
        let first = try await pushes(slot: slot, users: everyone)
        let byUser = Dictionary(grouping: first, by: \.userID)
        #expect(Set(byUser.keys) == everyone, "no user lost")
        let twoDifferent = byUser.filter { Set($0.value.map(\.pushID)).count > 1 }.keys.sorted()
        #expect(twoDifferent.isEmpty, "never two different pushes for one user and slot: \(twoDifferent)")
        #expect(first.count > 500, "the pushes produced but never marked were sent again (with their ids)")
        #expect(first.count <= 500 + 60 + 50, "at most the unmarked pushes (and a batch in flight) sent again")

        // The hour forced again: every user is marked sent, nothing goes out twice.
        let again = try await adminRequest(
            survivor.admin, "POST", "jobs/book-rec-push/trigger?period=\(slot)&force=true", token: "t0ken")
        #expect(again.status == 202, "\(again.body)")
        try await eventually(timeout: .seconds(90), "the forced re-run to finish") {
            let progress = try await runs.progress(job: "book-rec-push", period: slot)
            return progress?.attempt == 2 && progress?.state == .succeeded
        }
        let after = try await pushes(slot: slot, users: everyone)
        #expect(after.count == first.count, "the re-run sent nothing: \(after.count - first.count) more")
    }

    @Test("a forced re-run while the hour is still pushing: the older attempt is fenced, no user is pushed twice")
    func forcedWhilePushing() async throws {
        let setup = try await setUp(
            latency: "2ms", serviceLatency: ["material": "40ms"],
            extra: [
                "PREWARM_PUSH_BATCH_SIZE": "20", "PREWARM_PUSH_BATCH_CONCURRENCY": "2",
                "PREWARM_PUSH_MAX_IN_FLIGHT": "10",
            ])
        let (redis, db, day, environment) = (setup.redis, setup.db, setup.day, setup.environment)
        try await db.addUsers(1...600, task: "04-026-\(day)-r0gdua", hour: 21)
        let pods = [try await start(environment), try await start(environment)]
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "test", logger: Logger(label: "test"), alerts: nil)
        let prewarm = try await adminRequest(
            pods[0].admin, "POST", "jobs/book-rec-prewarm/trigger?period=\(day)", token: "t0ken")
        #expect(prewarm.status == 202, "\(prewarm.body)")
        try await eventually(timeout: .seconds(90), "the pre-warm to succeed") {
            try await runs.progress(job: "book-rec-prewarm", period: day)?.state == .succeeded
        }

        let slot = day + "21"
        let first = try await adminRequest(
            pods[0].admin, "POST", "jobs/book-rec-push/trigger?period=\(slot)", token: "t0ken")
        #expect(first.status == 202, "\(first.body)")
        try await eventually(timeout: .seconds(60), "the first attempt to be part-way") {
            try await runs.progress(job: "book-rec-push", period: slot)?.batchesDone ?? 0 >= 4
        }
        let forced = try await adminRequest(
            pods[1].admin, "POST", "jobs/book-rec-push/trigger?period=\(slot)&force=true", token: "t0ken")
        #expect(forced.status == 202, "a forced trigger is accepted while the hour runs: \(forced.body)")
        try await eventually(timeout: .seconds(120), "the forced attempt to finish") {
            let progress = try await runs.progress(job: "book-rec-push", period: slot)
            return progress?.attempt == 2 && progress?.state == .succeeded
        }
        let everyone = Set((1...600).map { Int64($0) })
        let seen = try await pushes(slot: slot, users: everyone)
        let byUser = Dictionary(grouping: seen, by: \.userID)
        let twice = byUser.filter { $0.value.count > 1 }.keys.sorted()
        #expect(twice.isEmpty, "no crash, so no user twice: \(twice.count) were")
        #expect(Set(byUser.keys) == everyone, "no user lost")
    }

    @Test(
        "extreme inputs: user Int64.max pre-warmed and pushed end to end; every bad batch dead-lettered once; no partition stops, the pod lives"
    )
    func extremeInputs() async throws {
        let setup = try await setUp(latency: "1ms")
        let (redis, db, day, environment) = (setup.redis, setup.db, setup.day, setup.environment)
        let task = "04-026-\(day)-r0gdua"
        try await db.execute(
            """
            INSERT INTO task_data (task_id, source_uid, project, push_hour, payload)
            SELECT $1, u, 'novel', 8, '{"big": ' || u || '}' FROM unnest(ARRAY[1, $2]::bigint[]) u
            """, [task, Int64.max])
        let pod = try await start(environment)

        let topic = TopicCatalog.bookRecommendationBatches.name
        let template =
            #"{"job": "book-rec-push", "period": "\#(day)08", "attempt": 1, "batch": 0, "batch_count": 1, "ids": [42], "produced_at": "2026-11-29T02:00:00+08:00"}"#
        let key = "book-rec-push:\(day)08:0"
        let bad =
            ExtremeInputs.bad(template: template, key: key, ids: ["attempt"]) + [
                ExtremeInputs.Input(
                    "an id past int64", key: key,
                    json: template.replacingOccurrences(of: "[42]", with: "[9223372036854775808]")),
                ExtremeInputs.Input(
                    "an unknown job", key: key,
                    json: template.replacingOccurrences(of: "book-rec-push", with: "book-rec-nothing")),
            ]
        try await ExtremeInputs.expectDeadLetteredOnce(bad, to: topic)

        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "test", logger: Logger(label: "test"), alerts: nil)
        #expect(
            try await adminRequest(pod.admin, "POST", "jobs/book-rec-prewarm/trigger?period=\(day)", token: "t0ken")
                .status == 202)
        try await eventually(timeout: .seconds(60), "the pre-warm to succeed") {
            try await runs.progress(job: "book-rec-prewarm", period: day)?.state == .succeeded
        }
        let slot = day + "08"
        #expect(
            try await adminRequest(pod.admin, "POST", "jobs/book-rec-push/trigger?period=\(slot)", token: "t0ken")
                .status == 202)
        let seen = try await pushes(slot: slot, users: [1, Int64.max])
        let largest = try #require(seen.first { $0.userID == Int64.max })
        #expect(largest.pushID == BookRecJobs.pushID(user: Int64.max, slot: slot, task: task))
        #expect(seen.count == 2, "each user once")
        try await ExtremeInputs.expectCommittedToTheEnd(
            group: TopicCatalog.bookRecommendationBatches.consumerGroup!, topic: topic)
        #expect(pod.process.child.exitStatus() == nil, "the pod lives")
    }
}
