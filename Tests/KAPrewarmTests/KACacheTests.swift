import Foundation
import KAPrewarm
import PrewarmRuntime
import Redis
import TestSupport
import Testing

@Suite("The key-account cache's writes", .closesResources)
struct KACacheTests {
    private func cache(on topology: RedisTopology) async throws -> KACache {
        KACache(redis: try await topology.connect(), prefix: TestEnvironment.uniqueName("kacache") + ":")
    }

    private func entries(_ cache: KACache, users: ClosedRange<Int64>, expiry: Int64) -> KACache.Entries {
        var entries = KACache.Entries()
        for user in users {
            entries.append(key: cache.userKey(shop: 1, user: user), value: "{\"user_id\":\(user)}", expiry: expiry)
        }
        return entries
    }

    private func take(_ cache: KACache, live: Int64, owner: String, ttl: Duration = .seconds(30)) async throws
        -> KALeaseFence
    {
        let until = Date().addingTimeInterval(600)
        let lease = try #require(
            try await RedisLease.acquire(
                cache.leaseKey(live: live), ttl: ttl, on: cache.redis, owner: owner,
                fence: (cache.fenceKey(live: live), until)))
        return cache.fence(lease, live: live, until: until)
    }

    @Test(
        "Redis refuses a batch whose lease another runner took, and writes none of its keys",
        arguments: RedisTopology.allCases)
    func fenced(on topology: RedisTopology) async throws {
        let cache = try await cache(on: topology)
        let expiry = Int64((Date().timeIntervalSince1970 + 3600) * 1000)
        let first = try await take(cache, live: 5, owner: "a")
        #expect(first.lease.generation == 1)
        #expect(try await cache.write(entries(cache, users: 1...10, expiry: expiry), fence: first) == .written(10))
        // The holder stalled past its lease; another runner took it.
        try await cache.redis.send("DEL", cache.leaseKey(live: 5))
        let second = try await take(cache, live: 5, owner: "b")
        #expect(second.lease.generation == 2)
        #expect(try await cache.write(entries(cache, users: 11...20, expiry: expiry), fence: first) == .leaseLost)
        #expect(try await cache.existing((11...20).map { cache.userKey(shop: 1, user: $0) }) == 0)
        #expect(try await cache.existing((1...10).map { cache.userKey(shop: 1, user: $0) }) == 10)
        #expect(try await cache.redis.send("GET", cache.leaseKey(live: 5)).string == second.lease.token)
    }

    @Test(
        "on a cluster, the slots the newer runner wrote refuse the older one even when its lease check passed (a race)")
    func generationInTheSlots() async throws {
        let cache = try await cache(on: .cluster)
        let expiry = Int64((Date().timeIntervalSince1970 + 3600) * 1000)
        let old = try await take(cache, live: 7, owner: "a", ttl: .seconds(60))
        try await cache.redis.send("DEL", cache.leaseKey(live: 7))
        let new = try await take(cache, live: 7, owner: "b")
        #expect(try await cache.write(entries(cache, users: 1...40, expiry: expiry), fence: new) == .written(40))
        // The old runner's check passes (its token back in the lease, as if it renewed just
        // before the taking): the copies in the slots still refuse it.
        try await cache.redis.send("SET", cache.leaseKey(live: 7), old.lease.token, "PX", 60_000)
        var stale = KACache.Entries()
        for user in Int64(1)...40 {
            stale.append(key: cache.userKey(shop: 1, user: user), value: "stale", expiry: expiry)
        }
        #expect(try await cache.write(stale, fence: old) == .leaseLost)
        let values = try await cache.redis.mget((1...40).map { cache.userKey(shop: 1, user: $0) })
        #expect(values.allSatisfy { $0.map { String(decoding: $0, as: UTF8.self) } != "stale" }, "nothing overwritten")
    }

    @Test(
        "on a cluster, a primary's script gives back the keys of slots it does not serve (a stale map), and they are written by their own primaries"
    )
    func keysElsewhere() async throws {
        let cluster = try await RedisTopology.cluster.connect()
        let map = try #require((cluster as? RedisClusterClient)?.slotMap)
        let cache = KACache(redis: StaleMapRedis(base: cluster), prefix: TestEnvironment.uniqueName("kacache") + ":")
        let expiry = Int64((Date().timeIntervalSince1970 + 3600) * 1000)
        let old = try await take(cache, live: 8, owner: "a", ttl: .seconds(60))
        let keys = (Int64(1)...60).map { cache.userKey(shop: 1, user: $0) }
        #expect(Set(keys.compactMap { map.primary(of: RedisKeySlot.of($0)) }).count == 3, "keys on every primary")
        #expect(try await cache.write(entries(cache, users: 1...60, expiry: expiry), fence: old) == .written(60))
        let values = try await cluster.mget(keys)
        #expect(values.map { $0.map { String(decoding: $0, as: UTF8.self) } } == (1...60).map { "{\"user_id\":\($0)}" })
        for key in keys { #expect(try await cluster.send("PEXPIRETIME", key) == .integer(expiry)) }

        // A newer runner took the lease and wrote the first key; the old one's check passes
        // (its token back in the lease, a race): its script, sent to the first key's primary,
        // is refused by that slot's copy before any key is written, on any primary.
        try await cluster.send("DEL", cache.leaseKey(live: 8))
        let new = try await take(cache, live: 8, owner: "b")
        #expect(try await cache.write(entries(cache, users: 1...1, expiry: expiry), fence: new) == .written(1))
        try await cluster.send("SET", cache.leaseKey(live: 8), old.lease.token, "PX", 60_000)
        var stale = KACache.Entries()
        for key in keys { stale.append(key: key, value: "stale", expiry: expiry) }
        #expect(try await cache.write(stale, fence: old) == .leaseLost)
        #expect(try await cluster.mget(keys).allSatisfy { $0.map { String(decoding: $0, as: UTF8.self) } != "stale" })
    }

    @Test("a batch written extends the lease to a full TTL", arguments: RedisTopology.allCases)
    func extendsLease(on topology: RedisTopology) async throws {
        let cache = try await cache(on: topology)
        let fence = try await take(cache, live: 6, owner: "a", ttl: .seconds(60))
        // Near its end (5 s: more than a loaded machine takes to reach the write).
        try await cache.redis.send("PEXPIRE", cache.leaseKey(live: 6), 5000)
        let expiry = Int64((Date().timeIntervalSince1970 + 3600) * 1000)
        #expect(try await cache.write(entries(cache, users: 1...3, expiry: expiry), fence: fence) == .written(3))
        #expect(try await cache.redis.send("PTTL", cache.leaseKey(live: 6)).integer ?? 0 > 50_000)
    }

    @Test(
        "a key expiring later keeps its expiry; one expiring sooner takes the new one",
        arguments: RedisTopology.allCases)
    func laterExpiryKept(on topology: RedisTopology) async throws {
        let cache = try await cache(on: topology)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let key = cache.userKey(shop: 1, user: 1)
        let other = cache.userKey(shop: 1, user: 2)
        try await cache.redis.send("SET", key, "old", "PXAT", now + 7_200_000)
        try await cache.redis.send("SET", other, "old", "PXAT", now + 60_000)
        try await cache.write(entries(cache, users: 1...2, expiry: now + 3_600_000))
        #expect(try await cache.redis.send("PEXPIRETIME", key) == .integer(now + 7_200_000))
        #expect(try await cache.redis.send("PEXPIRETIME", other) == .integer(now + 3_600_000))
        #expect(try await cache.redis.send("GET", key).string == "{\"user_id\":1}", "the value is new either way")
    }
}

@Suite("The key-account cache's transactional writes", .closesResources)
struct KACacheTransactionTests {
    private func setUp() async throws -> (KACache, RedisConnection) {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
        var configuration = try TestEnvironment.redis()
        configuration.retryAfterConnectionLoss = false
        let writer = try await RedisConnection.connect(configuration)
        closeAfterTest { await writer.close() }
        return (KACache(redis: redis, prefix: TestEnvironment.uniqueName("katx") + ":"), writer)
    }

    private func entries(_ cache: KACache, users: ClosedRange<Int64>, expiry: Int64) -> KACache.Entries {
        var entries = KACache.Entries()
        for user in users {
            entries.append(key: cache.userKey(shop: 1, user: user), value: "{\"user_id\":\(user)}", expiry: expiry)
        }
        return entries
    }

    @Test("a transaction under a lease another runner took writes nothing; under ours it writes every key")
    func fenced() async throws {
        let (cache, writer) = try await setUp()
        let expiry = Int64((Date().timeIntervalSince1970 + 3600) * 1000)
        let lease = try #require(
            try await RedisLease.acquire(
                cache.leaseKey(live: 5), ttl: .seconds(30), on: cache.redis, owner: "a",
                fence: (cache.fenceKey(live: 5), Date().addingTimeInterval(600))))
        let first = try await cache.write(
            entries(cache, users: 1...300, expiry: expiry),
            fence: cache.fence(lease, live: 5, until: Date().addingTimeInterval(600)), on: writer)
        #expect(first == .written(300))
        #expect(try await cache.existing((1...300).map { cache.userKey(shop: 1, user: $0) }) == 300)
        #expect(try await cache.redis.send("PEXPIRETIME", cache.userKey(shop: 1, user: 9)) == .integer(expiry))
        // The lease renewed meanwhile: no harm. Then another runner takes it (after it lapsed).
        try await lease.renew()
        let renewed = try await cache.write(
            entries(cache, users: 301...310, expiry: expiry),
            fence: cache.fence(lease, live: 5, until: Date().addingTimeInterval(600)), on: writer)
        #expect(renewed == .written(10))
        try await cache.redis.send("DEL", cache.leaseKey(live: 5))
        let taker = try #require(
            try await RedisLease.acquire(
                cache.leaseKey(live: 5), ttl: .seconds(30), on: cache.redis, owner: "b",
                fence: (cache.fenceKey(live: 5), Date().addingTimeInterval(600))))
        #expect(try await cache.redis.send("GET", cache.fenceKey(live: 5)).string == taker.token)
        let second = try await cache.write(
            entries(cache, users: 311...400, expiry: expiry),
            fence: cache.fence(lease, live: 5, until: Date().addingTimeInterval(600)), on: writer)
        #expect(second == .leaseLost)
        #expect(try await cache.existing((311...400).map { cache.userKey(shop: 1, user: $0) }) == 0)
    }

    @Test("existing keys in a transaction: the value is new, a later expiry kept, an earlier one replaced")
    func existingKeys() async throws {
        let (cache, writer) = try await setUp()
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        try await cache.redis.send("SET", cache.userKey(shop: 1, user: 1), "old", "PXAT", now + 7_200_000)
        try await cache.redis.send("SET", cache.userKey(shop: 1, user: 2), "old", "PXAT", now + 60_000)
        let lease = try #require(
            try await RedisLease.acquire(
                cache.leaseKey(live: 6), ttl: .seconds(30), on: cache.redis, owner: "a",
                fence: (cache.fenceKey(live: 6), Date().addingTimeInterval(600))))
        let result = try await cache.write(
            entries(cache, users: 1...3, expiry: now + 3_600_000),
            fence: cache.fence(lease, live: 6, until: Date().addingTimeInterval(600)), on: writer)
        #expect(result == .written(3))
        #expect(try await cache.redis.send("PEXPIRETIME", cache.userKey(shop: 1, user: 1)) == .integer(now + 7_200_000))
        #expect(try await cache.redis.send("PEXPIRETIME", cache.userKey(shop: 1, user: 2)) == .integer(now + 3_600_000))
        #expect(try await cache.redis.send("GET", cache.userKey(shop: 1, user: 1)).string == "{\"user_id\":1}")
        #expect(try await cache.redis.send("GET", cache.userKey(shop: 1, user: 3)).string == "{\"user_id\":3}")
    }
}

/// The cluster, as a client whose slot map is stale would see it: every key believed served by
/// the primary of the first one.
private struct StaleMapRedis: RedisClient {
    let base: any RedisClient
    var configuration: RedisConfiguration { base.configuration }
    var splitsKeysBySlot: Bool { true }
    func atomicGroups(of keys: [String]) -> [[Int]] { base.atomicGroups(of: keys) }
    func serverGroups(of keys: [String]) -> [[[Int]]] { keys.isEmpty ? [] : [atomicGroups(of: keys)] }
    func pipeline(_ commands: [RedisCommand]) async throws -> [RedisReply] { try await base.pipeline(commands) }
    func run(_ script: RedisScript, keys: RedisArguments, arguments: RedisArguments) async throws -> RedisReply {
        try await base.run(script, keys: keys, arguments: arguments)
    }
    func keys(matching pattern: String, count: Int) async throws -> [String] {
        try await base.keys(matching: pattern, count: count)
    }
    func close() async {}
}
