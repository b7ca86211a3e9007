import CoreMetrics
import EntryIngest
import Foundation
import Logging
import Postgres
import PrewarmRuntime
import Redis
import StoreRecommendation
import TestSupport
import Testing

@Suite("The store scorer against PostgreSQL and Redis", .closesResources)
struct StoreScorerTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!
    let stores = [
        StoreInfo(id: 1, name: "noodles 1", category: 1, zone: 10),
        StoreInfo(id: 2, name: "noodles 2", category: 1, zone: 20),
        StoreInfo(id: 3, name: "rice 3", category: 2, zone: 10),
        StoreInfo(id: 4, name: "rice 4", category: 2, zone: 20),
        StoreInfo(id: 5, name: "soup 5", category: 3, zone: 30),
        StoreInfo(id: 6, name: "noodles 6 (closed)", category: 1, zone: 10),
        StoreInfo(id: 7, name: "noodles 7", category: 1, zone: 10),
    ]

    func run(_ period: String, attempt: Int = 1) -> JobRunInfo {
        JobRunInfo(job: StoreScorer.jobName, period: period, attempt: attempt, forced: false, due: Date())
    }

    func batch(_ run: JobRunInfo, _ users: [Int64]) -> JobBatch {
        JobBatch(job: run.job, period: run.period, attempt: run.attempt, batch: 0, batchCount: 1, ids: users)
    }

    private func setUp(on topology: RedisTopology) async throws -> (
        StoreScorer, RecommendationCache, StoreDatabase, any RedisClient
    ) {
        let db = try await StoreDatabase.make()
        try await db.addStores(stores, closed: [6])
        let november25 = ISO8601DateFormatter().date(from: "2026-11-25T04:00:00Z")!
        let october = ISO8601DateFormatter().date(from: "2026-10-20T04:00:00Z")!
        // User 1001: the hand-computed example (store 1 ×4, closed 6 ×2, 3 ×2, 4 ×2).
        for (store, count) in [(1, 4), (6, 2), (3, 2), (4, 2)] {
            try await db.addVisits(user: 1001, store: stores[store - 1], count: count, at: november25)
        }
        // User 1002: only the closed store, and old visits outside the window.
        try await db.addVisits(user: 1002, store: stores[5], count: 3, at: november25)
        try await db.addVisits(user: 1002, store: stores[4], count: 50, at: october)
        let redis = try await topology.connect()
        let cache = RecommendationCache(redis: redis, prefix: TestEnvironment.uniqueName("rec") + ":")
        let scorer = StoreScorer(
            options: ScoringOptions(), cache: cache, data: StoreData(pool: db.pool), timeZone: shanghai,
            logger: Logger(label: "test"))
        return (scorer, cache, db, redis)
    }

    @Test(
        "a batch writes each user's top stores (closed ones never), the run stamped; a replay changes nothing",
        arguments: RedisTopology.allCases)
    func batchLists(on topology: RedisTopology) async throws {
        let (scorer, cache, _, redis) = try await setUp(on: topology)
        try await redis.send("SET", cache.storeKey(6), "{\"id\":6}")  // a closed store's stale details
        let tonight = run("20261201")
        try await scorer.prepare(tonight)
        #expect(try await redis.send("EXISTS", cache.storeKey(6)) == .integer(0), "closed store removed")
        #expect(
            Set(try await redis.send("SMEMBERS", cache.openKey).array?.compactMap(\.integer) ?? []) == [
                1, 2, 3, 4, 5, 7,
            ])
        let details = try await cache.details([1, 6])
        #expect(details[1] == .found(StoreJSON(stores[0])) && details[6] == .unknown)

        let result = try await scorer.work(batch(tonight, [1001, 1002, 1003]))
        #expect(result.itemsDone == 3)
        let stamp = StoreList.stamp(period: "20261201", attempt: 1)
        #expect(try await cache.list(of: 1001) == StoreList(stores: [1, 3, 7, 4], run: stamp))
        // Only the closed store in the window: its category and zone still pull the others.
        #expect(try await cache.list(of: 1002) == StoreList(stores: [1, 7, 2, 3], run: stamp))
        #expect(try await cache.list(of: 1003) == nil, "no visits, no list")
        let ttl = try #require(try await redis.send("PTTL", cache.userKey(1001)).integer)
        #expect(ttl > 26 * 3_600_000 - 5000 && ttl <= 28 * 3_600_000, "26 h plus up to 2 h of jitter")

        let before = try await redis.send("GET", cache.userKey(1001))
        let tally = scorer.tallyKey(period: "20261201", attempt: 1)
        let tallyBefore = try await redis.send("HGETALL", tally)
        #expect(tallyBefore.array?.isEmpty == false)
        _ = try await scorer.work(batch(tonight, [1001, 1002, 1003]))
        let after = try await redis.send("GET", cache.userKey(1001))
        #expect(after == before, "a replay writes the same list: \(before.string ?? "") \(after.string ?? "")")
        #expect(try await redis.send("HGETALL", tally) == tallyBefore, "a replayed batch's visits count once")
    }

    @Test("a batch of an older run never overwrites a newer run's list", arguments: RedisTopology.allCases)
    func olderRunRefused(on topology: RedisTopology) async throws {
        let (scorer, cache, db, _) = try await setUp(on: topology)
        _ = try await scorer.work(batch(run("20261201"), [1001]))
        // The user's habits change, then a late batch of last night's run arrives.
        try await db.addVisits(
            user: 1001, store: stores[4], count: 40, at: ISO8601DateFormatter().date(from: "2026-11-29T04:00:00Z")!)
        _ = try await scorer.work(batch(run("20261130"), [1001]))
        #expect(try await cache.list(of: 1001)?.run == StoreList.stamp(period: "20261201", attempt: 1))
        #expect(try await cache.list(of: 1001)?.stores == [1, 3, 7, 4])
        // A forced second attempt of tonight's run is newer, and overwrites.
        _ = try await scorer.work(batch(run("20261201", attempt: 2), [1001]))
        #expect(try await cache.list(of: 1001)?.stores.first == 5)
    }

    @Test(
        "the run's end writes the default list from its tally and saves the stores' popularity",
        arguments: RedisTopology.allCases)
    func finish(on topology: RedisTopology) async throws {
        let (scorer, cache, db, _) = try await setUp(on: topology)
        let tonight = run("20261201")
        try await scorer.prepare(tonight)
        _ = try await scorer.work(batch(tonight, [1001, 1002]))
        let progress = JobRunProgress(job: StoreScorer.jobName, period: "20261201", attempt: 1, state: .succeeded)
        try await scorer.finish(progress)
        // Tally: store 1 ×4, 3 ×2, 4 ×2 (6 is closed). Categories 1 → 4, 2 → 4; zones 10 → 6, 20 → 2.
        // 1: 2+1.2+1.2 = 4.4; 3: 1+1.2+1.2 = 3.4; 7: 0+1.2+1.2 = 2.4; 4: 1+1.2+0.4 = 2.6.
        let defaultList = try #require(try await cache.defaultList())
        #expect(defaultList.list.stores == [1, 3, 4, 7])
        let popularity = try await StoreData(pool: db.pool).popularity()
        #expect(popularity == [1: 4, 3: 2, 4: 2, 6: 5])
    }

    @Test(
        "a deleted store: within one run no answer names it (the user's list removed, its details removed)",
        arguments: RedisTopology.allCases)
    func deletedStore(on topology: RedisTopology) async throws {
        let (scorer, cache, db, redis) = try await setUp(on: topology)
        // User 1004 visits only store 5, the one store of its category and zone.
        try await db.addVisits(
            user: 1004, store: stores[4], count: 3, at: ISO8601DateFormatter().date(from: "2026-11-28T04:00:00Z")!)
        let first = run("20261201")
        try await scorer.prepare(first)
        _ = try await scorer.work(batch(first, [1001, 1004]))
        #expect(try await cache.list(of: 1004)?.stores == [5])
        let service = RecommendationService(
            cache: cache, data: StoreData(pool: db.pool), options: ReadPathOptions(), logger: Logger(label: "test"),
            metricsFactory: NOOPMetricsHandler.instance)
        #expect(try await service.recommend(user: 1004).stores.map(\.id) == [5])

        try await db.execute("DELETE FROM stores WHERE store_id = 5")
        let second = run("20261202")
        try await scorer.prepare(second)
        #expect(try await redis.send("EXISTS", cache.storeKey(5)) == .integer(0), "the deleted store's details")
        _ = try await scorer.work(batch(second, [1001, 1004]))
        #expect(try await cache.list(of: 1004) == nil, "no open store left for the user: its list removed")
        #expect(try await cache.list(of: 1001)?.run == StoreList.stamp(period: "20261202", attempt: 1))
        let answer = try await service.recommend(user: 1004)
        #expect(!answer.stores.isEmpty && !answer.stores.contains { $0.id == 5 }, "\(answer)")
        #expect(answer.source != .personal)
        // A list still naming it (a user the run did not reach) is answered without it.
        _ = try await cache.writeLists([(1009, [5, 1])], run: 1) { .seconds(600) }
        #expect(try await service.recommend(user: 1009).stores.map(\.id) == [1])
    }

    @Test(
        "a batch of an older attempt writes no list once a forced newer attempt of the run began",
        arguments: RedisTopology.allCases)
    func olderAttemptFenced(on topology: RedisTopology) async throws {
        let (scorer, cache, _, redis) = try await setUp(on: topology)
        let period = "20261203"
        let runs = JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "pod", logger: Logger(label: "test"), alerts: nil)
        try await redis.send("DEL", JobRuns.progressKey(job: StoreScorer.jobName, period: period))
        for force in [false, true] {
            _ = try await runs.claim(job: StoreScorer.jobName, period: period, due: Date(), force: force, deadline: nil)
        }
        await #expect(throws: StaleAttempt.self) {
            _ = try await scorer.work(batch(run(period, attempt: 1), [1001]))
        }
        #expect(try await cache.list(of: 1001) == nil, "attempt 1 wrote nothing after attempt 2 began")
        _ = try await scorer.work(batch(run(period, attempt: 2), [1001]))
        #expect(try await cache.list(of: 1001)?.run == StoreList.stamp(period: period, attempt: 2))
    }
}
