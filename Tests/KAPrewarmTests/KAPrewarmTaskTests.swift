import CoreMetrics
import Foundation
import Logging
import PrewarmRuntime
import Redis
import TestSupport
import Testing

@testable import KAPrewarm

@Suite("A live's pre-warm", .closesResources)
struct KAPrewarmTaskTests {
    /// `PEXPIRETIME` of each key, in milliseconds since the epoch.
    private func expiries(_ redis: any RedisClient, _ keys: [String]) async throws -> [Int64] {
        var result: [Int64] = []
        for chunk in stride(from: 0, to: keys.count, by: 500) {
            let replies = try await redis.pipeline(
                keys[chunk..<min(chunk + 500, keys.count)].map { RedisCommand("PEXPIRETIME", $0) })
            result += replies.map { $0.integer ?? -3 }
        }
        return result
    }

    private func json(_ redis: any RedisClient, _ key: String) async throws -> [String: Any] {
        let text = try #require(try await redis.send("GET", key).string, "\(key) is missing")
        return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test(
        "every key written, each expiring 30 to 40 minutes after the stream ends, spread; then the success flag",
        arguments: RedisTopology.allCases)
    func complete(on topology: RedisTopology) async throws {
        let harness = try await KAHarness.make(.testing(batchSize: 50, maxWriters: 2, verifyRatio: 0.05), on: topology)
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 1234)
        let booked = reservation(live: live, shop: shop)
        // A key of another stream of the shop, expiring later than this one's: its expiry stays.
        let later = Int64((booked.endsAt.timeIntervalSince1970 + 7200) * 1000)
        try await harness.redis.send("SET", harness.cache.userKey(shop: shop, user: 7), "older", "PXAT", later)
        harness.startRunner()
        _ = try await harness.queue.enqueue(booked)
        try await harness.waitForState(.succeeded, live: live)

        let keys = try await harness.userKeys(shop: shop)
        #expect(keys.count == 1234)
        let user = try await json(harness.redis, harness.cache.userKey(shop: shop, user: 7))
        #expect(user["user_id"] as? Int == 7 && user["nickname"] as? String == "fan 7")
        #expect(user["shop_id"] as? Int64 == shop && user["points"] as? Int == 70)
        let info = try await json(harness.redis, harness.cache.shopKey(shop))
        #expect(info["name"] as? String == "shop \(shop)")
        for (key, count) in [
            (harness.cache.staffKey(shop), 3), (harness.cache.productsKey(shop), 5),
            (harness.cache.marketingKey(shop), 2),
        ] {
            let text = try #require(try await harness.redis.send("GET", key).string)
            #expect((try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [Any])?.count == count, "\(key)")
        }

        let end = Int64(booked.endsAt.timeIntervalSince1970 * 1000)
        let window = (end + 30 * 60_000)...(end + 40 * 60_000)
        let shopKeys = [
            harness.cache.shopKey(shop), harness.cache.staffKey(shop), harness.cache.productsKey(shop),
            harness.cache.marketingKey(shop),
        ]
        let userKeys = keys.filter { $0 != harness.cache.userKey(shop: shop, user: 7) }
        let times = try await expiries(harness.redis, userKeys + shopKeys)
        #expect(times.allSatisfy { window.contains($0) }, "every TTL within [end + 30 min, end + 40 min]")
        #expect((times.max() ?? 0) - (times.min() ?? 0) > 5 * 60_000, "TTLs spread over the 10 minutes")
        #expect(try await expiries(harness.redis, [harness.cache.userKey(shop: shop, user: 7)]) == [later])

        let flag = try await expiries(harness.redis, [harness.cache.doneKey(live: live)])[0]
        #expect(abs(flag - end) < 2000, "the success flag lasts until the stream ends")
        #expect(try await harness.redis.send("EXISTS", harness.cache.leaseKey(live: live)) == .integer(0))
        let task = try #require(try await harness.state(live: live))
        #expect(
            task.done == 1234 && task.total == 1234
                && task.cursor == (1...1234).map(KAUserPosition.init(of:)).max()?.description)
        #expect(task.rate ?? 0 > 0)
    }

    @Test(
        "keys deleted behind the task's back are found by the verification pass and warmed again",
        arguments: RedisTopology.allCases)
    func verificationRewarms(on topology: RedisTopology) async throws {
        let harness = try await KAHarness.make(.testing(batchSize: 50, maxWriters: 1, rowsPerSecond: 500), on: topology)
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 1000)
        harness.startRunner()
        _ = try await harness.queue.enqueue(reservation(live: live, shop: shop))
        try await eventually("half the users written") { try await harness.state(live: live)?.done ?? 0 >= 500 }
        // An eviction, or a failover that lost acknowledged writes.
        let lost = (1...100).map { harness.cache.userKey(shop: shop, user: Int64($0)) }
        #expect(try await harness.redis.send(RedisCommand("DEL", arguments: lost)) == .integer(100))
        try await harness.waitForState(.succeeded, live: live)
        #expect(try await harness.userKeys(shop: shop).count == 1000)
        try await eventually("the verification alert") {
            try await harness.alerts("ka-verification-failed", live: live).count == 1
        }
    }

    @Test("Redis down mid-task: failed batches go to the retry table, are written when it returns; the task succeeds")
    func redisOutage() async throws {
        let server = try PrivateRedisServer()
        try await server.start()
        closeAfterTest { try? await server.stop() }
        let redis = try await RedisConnection.connect(server.configuration)
        closeAfterTest { await redis.close() }
        let harness = try await KAHarness.make(
            .testing(batchSize: 50, maxWriters: 2, rowsPerSecond: 600), redis: redis)
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 1500)
        harness.startRunner()
        _ = try await harness.queue.enqueue(reservation(live: live, shop: shop))
        try await eventually("a fifth of the users written") { try await harness.state(live: live)?.done ?? 0 >= 300 }
        try await server.stop()
        try await eventually("failed batches in the retry table") {
            try await harness.db.scalar("SELECT count(*) FROM prewarm_retry WHERE state = 'pending'") >= 2
        }
        try await server.start()  // empty: what it held before is gone too
        try await harness.waitForState(.succeeded, live: live, timeout: .seconds(120))
        #expect(try await harness.userKeys(shop: shop).count == 1500)
        #expect(try await harness.redis.send("EXISTS", harness.cache.shopKey(shop)) == .integer(1))
        #expect(try await harness.redis.send("EXISTS", harness.cache.doneKey(live: live)) == .integer(1))
        #expect(try await harness.db.scalar("SELECT count(*) FROM prewarm_retry") == 0, "every retry row drained")
    }

    @Test(
        "PostgreSQL down mid-task: its reads and checkpoint saves refused, the attempt fails and is retried from the last save when the database returns; every key, the task succeeds"
    )
    func postgresOutage() async throws {
        let server = try PrivatePostgresServer()
        try await server.start()
        closeAfterTest { await server.destroy() }
        let db = try await KADatabase.make(server: try server.configuration)
        let harness = try await KAHarness.make(.testing(batchSize: 50, maxWriters: 2, rowsPerSecond: 600), db: db)
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 1500)
        harness.startRunner()
        _ = try await harness.queue.enqueue(reservation(live: live, shop: shop))
        try await eventually("a fifth of the users written") { try await harness.state(live: live)?.done ?? 0 >= 300 }
        try await server.stop()
        try await Task.sleep(for: .seconds(2))  // the reads ahead and the saves meet the outage
        try await server.start()
        // The test's own reads may meet a pooled connection the restart cut: read again.
        var last: TaskRecord?
        try await eventually(timeout: .seconds(120), "the pre-warm to succeed after the outage") {
            last = try? await harness.state(live: live)
            return last?.state == .succeeded || last?.state == .failed
        }
        let task = try #require(last)
        #expect(task.state == .succeeded, "\(task.lastError ?? "")")
        #expect(task.done == 1500 && task.total == 1500)
        #expect(task.attempts >= 2, "the outage failed an attempt, which was tried again")
        #expect(try await harness.userKeys(shop: shop).count == 1500)
        #expect(try await harness.redis.send("EXISTS", harness.cache.doneKey(live: live)) == .integer(1))
    }

    @Test("a task that cannot finish before its stream starts alerts while it runs, before the start")
    func predictedLate() async throws {
        let harness = try await KAHarness.make(.testing(batchSize: 50, maxWriters: 2, rowsPerSecond: 200))
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 3000)
        harness.startRunner()
        let booked = reservation(live: live, shop: shop, startsIn: 6)
        _ = try await harness.queue.enqueue(booked)
        try await eventually("the deadline-risk alert") {
            try await !harness.alerts("ka-deadline-risk", live: live).isEmpty
        }
        let alert = try #require(try await harness.alerts("ka-deadline-risk", live: live).first)
        #expect(alert.at < booked.startsAt, "raised before the stream starts, not when it is late")
        #expect(try await harness.state(live: live)?.state == .running)
        #expect(alert.message.contains("will not be pre-warmed before its stream starts"))
    }

    @Test("the database read cap holds from the first second: a bucket that starts empty")
    func readCapFromTheStart() async throws {
        let limiter = RowRateLimiter(rowsPerSecond: 400)
        let start = ContinuousClock.now
        var rows = 0
        while ContinuousClock.now - start < .seconds(1) {
            try await limiter.acquire(50)
            if ContinuousClock.now - start <= .seconds(1) { rows += 50 }
        }
        #expect(rows <= 450, "\(rows) rows in the first second, cap 400 (a bucket that starts full lets 800 by)")
    }

    @Test(
        "Redis loses a pre-warmed live's keys before its stream: the guard queues it again, alerted, and it is warmed")
    func cacheLost() async throws {
        let harness = try await KAHarness.make(.testing(batchSize: 50, maxWriters: 2))
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 300)
        harness.startRunner()
        _ = try await harness.queue.enqueue(reservation(live: live, shop: shop))
        try await harness.waitForState(.succeeded, live: live)
        let cacheGuard = KACacheGuard(
            tasks: harness.tasks, cache: harness.cache, checkEvery: .seconds(1),
            alerts: Alerts(
                worker: "ka-test", logger: Logger(label: "t"), metricsFactory: NOOPMetricsHandler.instance,
                redis: harness.redis), logger: Logger(label: "t"))
        #expect(try await cacheGuard.check().isEmpty, "keys and flag there: nothing to do")

        // A failover without persistence: every key of the live gone, its task still succeeded.
        let lost = try await harness.userKeys(shop: shop) + [harness.cache.doneKey(live: live)]
        try await harness.redis.send(RedisCommand("DEL", arguments: lost))
        #expect(try await cacheGuard.check() == [live])
        #expect(try await cacheGuard.check().isEmpty, "queued once, by whichever pod looked first")
        try await harness.waitForState(.succeeded, live: live)
        #expect(try await harness.userKeys(shop: shop).count == 300, "warmed again")
        #expect(try await harness.redis.send("EXISTS", harness.cache.doneKey(live: live)) == .integer(1))
        try await eventually("the alert") { try await !harness.alerts("ka-cache-lost", live: live).isEmpty }
    }
}
