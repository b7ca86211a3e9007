import BookRecPush
import DownstreamSimulation
import Foundation
import Kafka
import PrewarmRuntime
import Redis
import TestSupport
import Testing

/// A push message as the gateway reads it.
struct PushSeen: Decodable {
    let pushID: String
    let userID: Int64
    let slot: String
    let taskID: String
    let traceID: String
    let recID: String
    let material: [String: String]
    let data: [String: Int]

    enum CodingKeys: String, CodingKey {
        case slot, material, data
        case pushID = "push_id"
        case userID = "user_id"
        case taskID = "task_id"
        case traceID = "trace_id"
        case recID = "rec_id"
    }

    static func decode(_ message: KafkaMessage) throws -> PushSeen {
        try JSONDecoder().decode(PushSeen.self, from: Data(message.value))
    }
}

@Suite("The book-rec hourly push", .closesResources)
struct BookRecPushTests {
    func everyone() -> DownstreamSimulator.Behaviour {
        var behaviour = DownstreamSimulator.Behaviour()
        behaviour.latency = "1ms"
        behaviour.experimentShare = 1
        return behaviour
    }

    @Test(
        "an hour: one push per cached user with its material and payload; misses counted and alerted; bad rows skipped",
        arguments: RedisTopology.allCases)
    func hour(on topology: RedisTopology) async throws {
        let fixture = try await PushFixture.make(on: topology, behaviour: everyone())
        try await fixture.db.addUsers(1...100, task: fixture.finished, hour: 9)
        try await fixture.db.execute(
            """
            INSERT INTO task_data (task_id, source_uid, project, push_hour, payload) VALUES
              ($1, NULL, 'novel', 9, '{}'), ($1, 501, '', 9, '{}'), ($1, 502, 'novel', 9, 'not json'),
              ($1, 503, 'novel', 24, '{}')
            """, [fixture.finished])
        try await fixture.prewarm((1...100).map { Int64($0) })
        // Ten users' recommendations lost (evicted, or the pre-warm missed them): 10 % > 5 %.
        for user in 91...100 { try await fixture.redis.send("DEL", fixture.cache.recommendationKey(Int64(user))) }

        let rows = try await fixture.db.pool.withConnection {
            try await $0.query("SELECT id FROM task_data WHERE task_id = $1 ORDER BY id", [fixture.finished])
        }.rows.compactMap { $0[0].int64 }
        #expect(rows.count == 104)
        let result = try await fixture.jobs.work(fixture.batch(BookRecJobs.pushJob, fixture.slot(9), rows))
        #expect(result.itemsFailed == 0)
        try await fixture.jobs.finishPush(fixture.progress(BookRecJobs.pushJob, fixture.slot(9)))

        let messages = try await TestEnvironment.read(fixture.topic, count: 90)
        #expect(messages.count == 90)
        let pushes = try messages.map(PushSeen.decode)
        #expect(Set(pushes.map(\.userID)) == Set((1...90).map { Int64($0) }))
        let push = try #require(pushes.first { $0.userID == 7 })
        #expect(push.pushID == BookRecJobs.pushID(user: 7, slot: fixture.slot(9), task: fixture.finished))
        #expect(push.slot == fixture.slot(9) && push.taskID == fixture.finished)
        #expect(push.traceID == "ab-later_read-7" && push.recID == "rec-7")
        #expect(push.material["title"] == "Your next read is waiting")
        #expect(push.material["image_url"] == "https://img.example.com/books/m-7.jpg")
        #expect(push.data == ["series_id": 7], "the row's payload passed on")
        #expect(messages.first { $0.key.map { String(decoding: $0, as: UTF8.self) } == "7" } != nil, "keyed by user")

        let counts = try await fixture.counts(BookRecJobs.pushJob, fixture.slot(9))
        #expect(counts["sent"] == 90 && counts["misses"] == 10 && counts["malformed"] == 4)
        #expect(fixture.services.simulator.stats.services["material"]?.calls == 90, "no material call for a miss")
        try await eventually("the miss-rate alert") {
            try await fixture.alerts(kind: "book-rec-push-misses").first?.details["misses"] == "10"
        }
    }

    @Test(
        "the hour re-run, its batches replayed, a crash between produce and mark: never two different pushes, none lost",
        arguments: RedisTopology.allCases)
    func oncePerUserAndSlot(on topology: RedisTopology) async throws {
        let fixture = try await PushFixture.make(on: topology, behaviour: everyone())
        try await fixture.db.addUsers(1...60, task: fixture.finished, hour: 22)
        try await fixture.db.addUsers(41...80, task: fixture.following, hour: 22)  // 41-60 in both tasks
        try await fixture.prewarm((1...80).map { Int64($0) })
        let slot = fixture.slot(22)
        let rows =
            try await fixture.db.rowIDs(task: fixture.finished, hour: 22)
            + fixture.db.rowIDs(task: fixture.following, hour: 22)
        #expect(rows.count == 100)
        let halves = [Array(rows.prefix(50)), Array(rows.suffix(50))]

        // Users 1-10 were pushed by a producer that died before marking them sent.
        _ = try await fixture.jobs.work(fixture.batch(BookRecJobs.pushJob, slot, Array(rows.prefix(10)), index: 9))
        for user in 1...10 {
            let id = BookRecJobs.pushID(user: Int64(user), slot: slot, task: fixture.finished)
            try await fixture.redis.send("SET", fixture.cache.sentKey(user: Int64(user), slot: slot), "claimed:" + id)
        }
        // The hour, one of its batches replayed, then the whole hour forced again (attempt 2).
        for (index, half) in halves.enumerated() {
            _ = try await fixture.jobs.work(fixture.batch(BookRecJobs.pushJob, slot, half, index: index))
        }
        _ = try await fixture.jobs.work(fixture.batch(BookRecJobs.pushJob, slot, halves[0], index: 0))
        for (index, half) in halves.enumerated() {
            _ = try await fixture.jobs.work(fixture.batch(BookRecJobs.pushJob, slot, half, index: index, attempt: 2))
        }

        // 80 users, plus the 10 sent again after the crash.
        let messages = try await TestEnvironment.read(fixture.topic, count: 90)
        let pushes = try messages.map(PushSeen.decode)
        #expect(pushes.count == 90)
        let byUser = Dictionary(grouping: pushes, by: \.userID)
        #expect(Set(byUser.keys) == Set((1...80).map { Int64($0) }), "no user lost")
        let twoDifferent = byUser.filter { Set($0.value.map(\.pushID)).count > 1 }
        #expect(twoDifferent.isEmpty, "never two different pushes for one user and slot: \(twoDifferent.keys)")
        #expect((1...10).allSatisfy { byUser[Int64($0)]?.count == 2 }, "the unmarked ones sent again, same id")
        #expect((11...80).allSatisfy { byUser[Int64($0)]?.count == 1 }, "the rest once, however often the hour ran")
        #expect(
            (41...60).allSatisfy { byUser[Int64($0)]?.first?.taskID == fixture.finished },
            "a user in both tasks gets the push of the row claimed first")
        let sent = try await fixture.redis.send("GET", fixture.cache.sentKey(user: 5, slot: slot)).string
        #expect(sent == "sent:" + BookRecJobs.pushID(user: 5, slot: slot, task: fixture.finished))

        // The hour's report counts batch 0 once, though it was worked twice (as when its pod
        // dies before recording it): 10 sent before the crash, then 50 and 30; 20 rows of
        // users whose other task's push was claimed first.
        let counts = try await fixture.counts(BookRecJobs.pushJob, slot)
        #expect(counts["rows"] == 110, "\(counts)")
        #expect(counts["sent"] == 90, "\(counts)")
        #expect(counts["other_push"] == 20, "\(counts)")
        #expect(counts["already_sent"] == nil, "\(counts)")
    }

    @Test(
        "the material service down for part of the hour: its pushes are retried at the hour's end, each sent once",
        arguments: RedisTopology.allCases)
    func materialDownThenBack(on topology: RedisTopology) async throws {
        let fixture = try await PushFixture.make(on: topology, behaviour: everyone())
        try await fixture.db.addUsers(1...50, task: fixture.finished, hour: 10)
        try await fixture.prewarm((1...50).map { Int64($0) })
        let slot = fixture.slot(10)
        fixture.services.simulator.behaviour.down = ["material"]
        let rows = try await fixture.db.rowIDs(task: fixture.finished, hour: 10)
        let result = try await fixture.jobs.work(fixture.batch(BookRecJobs.pushJob, slot, rows))
        #expect(result.itemsFailed == 50, "every push of the batch failed while the service was down")
        #expect(try await fixture.counts(BookRecJobs.pushJob, slot)["failed"] == 50)
        let finishing = Task { try await fixture.jobs.finishPush(fixture.progress(BookRecJobs.pushJob, slot)) }
        try await Task.sleep(for: .seconds(2))
        fixture.services.simulator.behaviour.down = []
        try await finishing.value

        let pushes = try (try await TestEnvironment.read(fixture.topic, count: 50)).map(PushSeen.decode)
        #expect(pushes.count == 50 && Set(pushes.map(\.userID)).count == 50, "every user pushed once")
        let counts = try await fixture.counts(BookRecJobs.pushJob, slot)
        #expect(counts["sent"] == 50 && (counts["failed"] ?? 0) == 0, "\(counts)")
        #expect(try await fixture.alerts(kind: "book-rec-push-unsent").isEmpty)
    }

    @Test("the material service down past the hour's send window: the rows left unsent are counted and alerted")
    func materialDownPastTheWindow() async throws {
        let fixture = try await PushFixture.make(behaviour: everyone()) { $0.sendWindow = .seconds(3) }
        try await fixture.db.addUsers(1...20, task: fixture.finished, hour: 11)
        try await fixture.prewarm((1...20).map { Int64($0) })
        let slot = fixture.slot(11)
        fixture.services.simulator.behaviour.down = ["material"]
        let rows = try await fixture.db.rowIDs(task: fixture.finished, hour: 11)
        _ = try await fixture.jobs.work(fixture.batch(BookRecJobs.pushJob, slot, rows))
        var run = fixture.progress(BookRecJobs.pushJob, slot)
        run.dueAt = Date()
        let started = ContinuousClock.now
        try await fixture.jobs.finishPush(run)
        #expect(ContinuousClock.now - started < .seconds(10), "it gives up when the window ends")
        #expect(fixture.services.simulator.stats.services["material"]?.calls ?? 0 > 20, "retried within the window")
        #expect(try await fixture.counts(BookRecJobs.pushJob, slot)["failed"] == 20)
        try await eventually("the unsent alert with its count") {
            try await fixture.alerts(kind: "book-rec-push-unsent").first?.details["unsent"] == "20"
        }
    }
}
