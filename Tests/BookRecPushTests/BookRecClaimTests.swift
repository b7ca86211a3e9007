import BookRecPush
import PrewarmRuntime
import Redis
import TestSupport
import Testing

/// The push claim against what other claimers left: their leases are read between the claim's
/// two scripts (on a cluster they live in the runs' slot, not the users').
@Suite("Claims of an hour's pushes", .closesResources)
struct BookRecClaimTests {
    @Test(
        "a push held by a live claimer is busy, one whose claimer is gone is taken over; sent and other pushes are left",
        arguments: RedisTopology.allCases)
    func againstOtherClaimers(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let cache = BookRecCache(redis: redis, prefix: TestEnvironment.uniqueName("claim") + ":")
        let job = TestEnvironment.uniqueName("book-rec-push")
        let slot = "2026120721"
        let users: [Int64] = [1, 2, 3, 4, 5, 6, Int64.max]
        let ids = users.map { BookRecJobs.pushID(user: $0, slot: slot, task: "t") }
        let held: [(user: Int, value: String)] = [
            (0, "claimed:\(ids[0])|1:3"),  // batch 3's consumer: its lease is held
            (1, "claimed:\(ids[1])|1:4"),  // batch 4's consumer died: no lease
            (2, "sent:\(ids[2])"),
            (3, "claimed:another-push|1:5"),  // the user's row in the other task
            (5, "claimed:\(ids[5])|1:f"),  // the finish step, its lease held
            (6, "claimed:\(ids[6])|1:9"),  // Int64.max's claimer died too
        ]
        for (user, value) in held {
            try await redis.send("SET", cache.sentKey(user: users[user], slot: slot), value, "EX", 600)
        }
        try await redis.send("SET", JobRuns.batchLeaseKey(job: job, period: slot, attempt: 1, batch: 3), "x", "EX", 60)
        try await redis.send("SET", JobRuns.finishKey(job: job, period: slot), "x", "EX", 60)

        let claimer = BookRecCache.Claimer.batch(
            JobBatch(job: job, period: slot, attempt: 1, batch: 7, batchCount: nil, ids: []))
        let claims = try await cache.claim(
            Array(zip(users, ids)).map { (user: $0, pushID: $1) }, slot: slot, by: claimer, ttl: .seconds(600))
        #expect(claims == [.busy, .unsent, .sent, .other, .claimed, .busy, .unsent])
        for user in [1, 4, 6] {
            #expect(
                try await redis.send("GET", cache.sentKey(user: users[user], slot: slot)).string
                    == "claimed:\(ids[user])|1:7", "now this claimer's")
        }
        #expect(
            try await redis.send("GET", cache.sentKey(user: users[0], slot: slot)).string == held[0].value,
            "the live claimer's push left to it")
    }
}
