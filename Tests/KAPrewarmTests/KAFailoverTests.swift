import Foundation
import KAPrewarm
import PrewarmRuntime
import Redis
import TestSupport
import Testing

/// A live's pre-warm on a Redis Cluster of its own, through the failover of the primary that
/// holds the live's lease and fence.
@Suite("A live's pre-warm through a Redis Cluster failover", .closesResources)
struct KAFailoverTests {
    @Test(
        "the primary of the live's lease killed mid-task: its replica promoted, every key present with its expiry at the end"
    )
    func primaryKilled() async throws {
        let cluster = try PrivateRedisCluster()
        closeAfterTest { await cluster.destroy() }
        try await cluster.start()
        let client = try await cluster.client()
        let harness = try await KAHarness.make(
            .testing(batchSize: 50, maxWriters: 2, rowsPerSecond: 600), redis: client)
        let shop = uniqueID()
        let live = uniqueID()
        try await harness.db.addShop(shop, users: 1500)
        try await cluster.waitForReplicas(client)
        harness.startRunner()
        let booked = reservation(live: live, shop: shop)
        _ = try await harness.queue.enqueue(booked)
        try await eventually("a fifth of the users written") { try await harness.state(live: live)?.done ?? 0 >= 300 }
        let victim = try #require(client.slotMap.primary(of: RedisKeySlot.of(harness.cache.leaseKey(live: live))))
        try await cluster.kill(victim.port)

        try await harness.waitForState(.succeeded, live: live, timeout: .seconds(180))
        let keys = (1...1500).map { harness.cache.userKey(shop: shop, user: Int64($0)) }
        #expect(try await harness.cache.existing(keys) == 1500, "every user's key, the lost ones warmed again")
        let end = Int64(booked.endsAt.timeIntervalSince1970 * 1000)
        let expiries = try await client.pipeline(keys.map { RedisCommand("PEXPIRETIME", $0) }).map { $0.integer ?? 0 }
        #expect(
            expiries.allSatisfy { ((end + 30 * 60_000)...(end + 40 * 60_000)).contains($0) },
            "every key expires 30 to 40 minutes after the stream")
        #expect(try await client.send("EXISTS", harness.cache.shopKey(shop)) == .integer(1))
        #expect(try await client.send("EXISTS", harness.cache.doneKey(live: live)) == .integer(1))
        let promoted = client.slotMap.primary(of: RedisKeySlot.of(harness.cache.leaseKey(live: live)))
        #expect(promoted != nil && promoted != victim, "the replica answers for the slot now")
    }
}
