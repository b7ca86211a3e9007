import Foundation
import Postgres
import Redis
import StoreRecommendation

/// `make bench api`'s data: 2,000 open stores with their details in the cache, a personal list
/// of four for each of `users` users, and a default list, as a scorer run leaves them.
struct APIWorkload {
    let users: Int

    /// Into one Redis, or into the cluster of `cluster`'s nodes when given.
    func write(postgres: PostgresConfiguration, redis: RedisConfiguration, cluster: [RedisSlotMap.Node]?)
        async throws
    {
        let stores = (1...2000).map {
            StoreInfo(id: Int64($0), name: "canteen stall \($0)", category: Int64($0 % 40), zone: Int64($0 % 25))
        }
        let db = try await PostgresConnection.connect(postgres)
        do {
            try await db.query(
                """
                INSERT INTO stores (store_id, name, category_id, zone_id)
                SELECT s, 'canteen stall ' || s, s % 40, s % 25 FROM generate_series(1, 2000) s
                ON CONFLICT (store_id) DO NOTHING
                """)
        } catch {
            await db.close()
            throw error
        }
        await db.close()
        let connection: any RedisClient =
            if let cluster {
                try await RedisClusterClient.connect(seeds: cluster, configuration: redis)
            } else {
                try await RedisConnection.connect(redis)
            }
        do {
            let cache = RecommendationCache(redis: connection)
            try await cache.writeStores(open: stores, closed: []) { .seconds(86_400) }
            try await cache.writeDefault(StoreList(stores: [17, 89, 185, 161], run: 1), ttl: .seconds(86_400))
            for first in stride(from: 1, through: users, by: 1000) {
                let lists = (first...min(first + 999, users)).map { user -> (user: Int64, stores: [Int64]) in
                    let base = Int64(user % 1990)
                    return (Int64(user), [base + 1, base + 3, base + 5, base + 8])
                }
                _ = try await cache.writeLists(lists, run: 1) { .seconds(86_400) }
            }
        } catch {
            await connection.close()
            throw error
        }
        await connection.close()
    }
}
