import EntryIngest
import Foundation
import Logging
import Postgres
import PrewarmRuntime
import StoreRecommendation
import TestSupport

/// A PostgreSQL schema of the test's own with entry-ingest's and the store-scorer's tables,
/// and a pool into it; dropped when the test ends.
struct StoreDatabase {
    let schema: String
    let configuration: PostgresConfiguration
    let pool: PostgresPool

    static func make() async throws -> StoreDatabase {
        let schema = try await TestSchema.make("stores") { pool in
            _ = try await pool.withConnection {
                try await Migrator.migrate(
                    $0, RuntimeSchema.migrations + EntryIngestSchema.migrations + StoreRecommendationSchema.migrations,
                    logger: Logger(label: "test"))
            }
        }
        return StoreDatabase(schema: schema.name, configuration: schema.configuration, pool: schema.pool)
    }

    func execute(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws {
        try await pool.withConnection { _ = try await $0.query(sql, parameters) }
    }

    func addStores(_ stores: [StoreInfo], closed: Set<Int64> = []) async throws {
        for store in stores {
            try await execute(
                "INSERT INTO stores (store_id, name, category_id, zone_id, is_open) VALUES ($1, $2, $3, $4, $5)",
                [store.id, store.name, store.category, store.zone, !closed.contains(store.id)])
        }
    }

    /// `count` visits of `user` to `store` at `at`, straight into the user's shard.
    func addVisits(user: Int64, store: StoreInfo, count: Int, at: Date) async throws {
        try await execute(
            """
            INSERT INTO \(EntryIngestSchema.shardTable(EntryIngestSchema.shard(of: user)))
                (event_id, user_id, store_id, category_id, zone_id, entered_at)
            SELECT gen_random_uuid(), $1, $2, $3, $4, $5 FROM generate_series(1, $6)
            """, [user, store.id, store.category, store.zone, at, count])
    }
}

extension StoreDatabase {
    /// Users `users` each visit a store on every day of `days` (the store depends on the user
    /// and the day), one statement per shard.
    func addActivity(users: ClosedRange<Int64>, days: [Date]) async throws {
        let times = "{" + days.map { "\"\(RFC3339.format($0))\"" }.joined(separator: ",") + "}"
        for shard in 0..<EntryIngestSchema.shardCount {
            try await execute(
                """
                INSERT INTO \(EntryIngestSchema.shardTable(shard))
                    (event_id, user_id, store_id, category_id, zone_id, entered_at)
                SELECT gen_random_uuid(), u, s.store_id, s.category_id, s.zone_id, d
                FROM generate_series($1::bigint, $2::bigint) u, unnest($3::timestamptz[]) d, stores s
                WHERE u % 16 = $4 AND s.store_id = 1 + (u + extract(day FROM d)::bigint) % 8
                """, [users.lowerBound, users.upperBound, times, shard])
        }
    }

    /// The environment that points a worker process at this schema.
    var workerEnvironment: [String: String] {
        ["PREWARM_POSTGRES_URL": configuration.conninfo]
    }
}
