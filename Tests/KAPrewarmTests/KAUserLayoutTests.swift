import Foundation
import KAPrewarm
import Postgres
import PrewarmRuntime
import Redis
import TestSupport
import Testing

/// A shop's users over 1021 sub-shards: the key contract the live-stream service reads with,
/// and the order the pre-warm reads them in.
@Suite("A key account's users by sub-shard", .closesResources)
struct KAUserLayoutTests {
    @Test(
        "a user's key carries its sub-shard, computable from the shop and user id alone (README's examples, the extremes)"
    )
    func keyContract() async throws {
        let cache = KACache(redis: try await RedisTopology.single.connect())
        #expect(cache.userKey(shop: 8801, user: 42) == "ka:user:{8801:42}:42")
        #expect(cache.userKey(shop: 8801, user: 2043) == "ka:user:{8801:1}:2043")
        #expect(cache.userKey(shop: 8801, user: 1021) == "ka:user:{8801:0}:1021")
        #expect(cache.userKey(shop: .max, user: .max) == "ka:user:{\(Int64.max):726}:\(Int64.max)")
        #expect(cache.userKey(shop: 1, user: -5) == "ka:user:{1:1016}:-5", "a negative id: its sub-shard from 0")
        #expect(cache.userKey(shop: 1, user: .min) == "ka:user:{1:294}:\(Int64.min)")
        // Users of one sub-shard share a slot; the sub-shards spread over the slots.
        #expect(RedisKeySlot.of(cache.userKey(shop: 7, user: 5)) == RedisKeySlot.of(cache.userKey(shop: 7, user: 1026)))
        let slots = Set((0..<Int64(1021)).map { RedisKeySlot.of(cache.userKey(shop: 7, user: $0)) })
        #expect(slots.count > 990, "1021 sub-shards over nearly as many slots")
    }

    private func ids(_ rows: PostgresTexts) -> [Int64] { (0..<rows.count).map { rows.integer(row: $0, column: 0) } }

    /// A schema of the test's own with one shop of `users` users, and its source.
    private func shop(users: Int) async throws -> (KADatabase, KASource, shop: Int64) {
        let db = try await KADatabase.make()
        let shop = uniqueID()
        try await db.addShop(shop, users: users)
        return (db, KASource(pool: db.pool), shop)
    }

    @Test(
        "the users read by sub-shard then id, from any place: each once, in order, ids at Int64.max and below zero in their sub-shards, by the index"
    )
    func readingOrder() async throws {
        let (db, source, shop) = try await self.shop(users: 300)
        let extremes: [Int64] = [0, 1021, 1022, 2043, -5, .max, .max - 1, .min]
        for user in extremes {
            try await db.execute(
                "INSERT INTO ka_shop_users (shop_id, user_id, nickname) VALUES ($1, $2, 'edge')", [shop, user])
        }
        let all = ((1...300).map { Int64($0) } + extremes).sorted { KAUserPosition(of: $0) < KAUserPosition(of: $1) }

        var read: [Int64] = []
        var position = KAUserPosition.start
        var batches = 0
        while true {
            let batch = ids(try await source.users(of: shop, after: position, limit: 7))
            read += batch
            batches += 1
            guard batch.count == 7 else { break }
            position = KAUserPosition(of: batch.last!)
        }
        #expect(read == all, "every user once, by sub-shard then id")
        #expect(batches == (all.count + 6) / 7 + (all.count % 7 == 0 ? 1 : 0))

        // A failed batch's range, and the verification's sample of what came before a place.
        let after = KAUserPosition(of: all[40])
        let through = KAUserPosition(of: all[90])
        #expect(ids(try await source.users(of: shop, after: after, through: through)) == Array(all[41...90]))
        let sampled = try await source.sampleUsers(of: shop, ratio: 1, through: through)
        #expect(Set(sampled) == Set(all[0...90]))

        // The planner reads them off the sub-shard index: an expression that differs from the
        // index's by a character makes it sort the shop's users on every batch.
        let plan = try await db.pool.withConnection { connection in
            _ = try await connection.query("SET enable_seqscan = off")
            let rows = try await connection.texts(
                """
                EXPLAIN SELECT \(KASource.userColumns) FROM ka_shop_users
                WHERE shop_id = $1 AND (((user_id % 1021 + 1021) % 1021), user_id) > ($2, $3)
                ORDER BY ((user_id % 1021 + 1021) % 1021), user_id LIMIT $4
                """, [shop, Int64(3), Int64(7), 7])
            return (0..<rows.count).map { rows.string(row: $0, column: 0) }.joined(separator: "\n")
        }
        #expect(plan.contains("ka_shop_users_sub_shard") && !plan.contains("Sort"), "\(plan)")
    }

    @Test(
        "a big shop's batch is one or two sub-shards (a few slots); a shop's keys spread over the cluster's primaries"
    )
    func spread() async throws {
        let (_, source, shop) = try await self.shop(users: 1021 * 100)
        let cluster = try await RedisTopology.cluster.connect()
        let cache = KACache(redis: cluster)
        let batch = ids(try await source.users(of: shop, after: .start, limit: 150))
        let slots = Set(batch.map { RedisKeySlot.of(cache.userKey(shop: shop, user: $0)) })
        #expect(slots.count == 2, "150 users of a shop with 100 a sub-shard: two sub-shards")

        let map = try #require((cluster as? RedisClusterClient)?.slotMap)
        var perPrimary: [RedisSlotMap.Node: Int] = [:]
        for user in Int64(1)...102_100 {
            perPrimary[map.primary(of: RedisKeySlot.of(cache.userKey(shop: shop, user: user)))!, default: 0] += 1
        }
        #expect(perPrimary.count == 3)
        let largest = Double(perPrimary.values.max() ?? 0) / 102_100
        #expect(largest < 0.40, "the largest primary's share of the shop's keys: \(largest)")
    }

    /// A failed batch as a version that read users by id alone left it in the retry table.
    private struct RetryRowBeforeSubShards: Encodable {
        let shopID: Int64
        let liveID: Int64
        let after: Int64
        let through: Int64
        let endsAt: Date
    }

    @Test(
        "a retry row left by the version before sub-shards is written after the upgrade: its users by id, under their new keys",
        arguments: RedisTopology.allCases)
    func retryRowBeforeSubShards(on topology: RedisTopology) async throws {
        let harness = try await KAHarness.make(.testing(batchSize: 50, maxWriters: 2, verifyRatio: 0.05), on: topology)
        let shop = uniqueID()
        try await harness.db.addShop(shop, users: 300)
        _ = try await harness.retries.add(
            kind: KAPrewarmTask.kind, taskID: nil,
            item: RetryRowBeforeSubShards(
                shopID: shop, liveID: uniqueID(), after: 100, through: 200, endsAt: Date().addingTimeInterval(7200)),
            error: "written before the upgrade")
        harness.startRunner()
        try await eventually(timeout: .seconds(30), "the old row's users written") {
            try await harness.userKeys(shop: shop).count == 100
        }
        let written = Set(try await harness.userKeys(shop: shop))
        #expect(written == Set((101...200).map { harness.cache.userKey(shop: shop, user: Int64($0)) }))
    }
}
