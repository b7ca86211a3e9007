import Foundation
import PrewarmRuntime
import Redis
import TestSupport
import Testing

@testable import KAPrewarm

@Suite("KA's batches on a Redis Cluster: a transaction a slot", .closesResources)
struct KAClusterTransactionTests {
    /// Users of sub-shards 5, 6 and 7: a batch of a big shop, three slots.
    private let users: [Int64] = [5, 6, 7].flatMap { shard in (0..<Int64(40)).map { shard + 1021 * $0 } }

    private func entries(_ cache: KACache, _ users: [Int64], value: String, expiry: Int64) -> KACache.Entries {
        var entries = KACache.Entries()
        for user in users {
            entries.append(key: cache.userKey(shop: 1, user: user), value: "\(value) \(user)", expiry: expiry)
        }
        return entries
    }

    private func lease(_ cache: KACache, live: Int64, owner: String) async throws -> KALeaseFence {
        let until = Date().addingTimeInterval(600)
        let lease = try #require(
            try await RedisLease.acquire(
                cache.leaseKey(live: live), ttl: .seconds(30), on: cache.redis, owner: owner,
                fence: (cache.fenceKey(live: live), until)))
        return cache.fence(lease, live: live, until: until)
    }

    @Test(
        "every key of a three-slot batch with its expiry (a later one kept, the value new); a slot a newer runner wrote refuses the older, nothing of it overwritten; a runner whose lease was taken writes nothing"
    )
    func transactions() async throws {
        let cluster = try #require(try await RedisTopology.cluster.connect() as? RedisClusterClient)
        let cache = KACache(redis: cluster, prefix: TestEnvironment.uniqueName("katxc") + ":")
        let writers = KAWriterConnections(cluster.configuration)
        closeAfterTest { await writers.close() }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let expiry = now + 3_600_000
        try await cluster.send("SET", cache.userKey(shop: 1, user: 5), "old", "PXAT", now + 7_200_000)
        try await cluster.send("SET", cache.userKey(shop: 1, user: 6), "old", "PXAT", now + 60_000)

        let first = try await lease(cache, live: 9, owner: "a")
        let written = try await cache.write(
            entries(cache, users, value: "first", expiry: expiry), fence: first, writers: writers)
        #expect(written == .written(users.count))
        let keys = users.map { cache.userKey(shop: 1, user: $0) }
        let values = try await cluster.mget(keys)
        #expect(zip(users, values).allSatisfy { $1.map { String(decoding: $0, as: UTF8.self) } == "first \($0)" })
        #expect(try await cluster.send("PEXPIRETIME", keys[0]) == .integer(now + 7_200_000), "a later expiry kept")
        #expect(try await cluster.send("PEXPIRETIME", keys[1]) == .integer(expiry), "an earlier one replaced")
        #expect(try await cluster.send("PEXPIRETIME", keys[2]) == .integer(expiry))

        // A newer lease generation wrote sub-shard 6's slot (its copy says so): the older
        // runner's batch is refused there, and none of that slot's keys change.
        let slot = RedisKeySlot.of(cache.userKey(shop: 1, user: 6))
        let copyKey = first.copy(generation: 0).key(forSlot: slot)
        try await cluster.send("SET", copyKey, (first.lease.generation ?? 0) + 1, "PX", 600_000)
        let refused = try await cache.write(
            entries(cache, users, value: "stale", expiry: expiry), fence: first, writers: writers)
        #expect(refused == .leaseLost)
        let sixes = users.filter { KACache.subShard(ofUser: $0) == 6 }
        let after = try await cluster.mget(sixes.map { cache.userKey(shop: 1, user: $0) })
        #expect(zip(sixes, after).allSatisfy { $1.map { String(decoding: $0, as: UTF8.self) } == "first \($0)" })

        // Another runner took the lease: the older writes nothing at all.
        try await cluster.send("DEL", cache.leaseKey(live: 9))
        _ = try await lease(cache, live: 9, owner: "b")
        let lost = try await cache.write(
            entries(cache, users, value: "lost", expiry: expiry), fence: first, writers: writers)
        #expect(lost == .leaseLost)
        #expect(
            try await cluster.mget(keys).allSatisfy {
                $0.map { String(decoding: $0, as: UTF8.self) }?.hasPrefix("lost") != true
            })
    }
}
