import EntryIngest
import Foundation
import Postgres

/// What the scorer and the API read from PostgreSQL: the stores, the tallied popularity, and
/// the users' visits in the window.
public struct StoreData: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// Every store, open and closed.
    public func stores() async throws -> (open: [StoreInfo], closed: [StoreInfo]) {
        let rows = try await pool.withConnection {
            try await $0.query("SELECT store_id, name, category_id, zone_id, is_open FROM stores ORDER BY store_id")
        }
        var open: [StoreInfo] = []
        var closed: [StoreInfo] = []
        for row in rows.rows {
            guard let id = row[0].int64 else { continue }
            let store = StoreInfo(
                id: id, name: row[1].string ?? "", category: row[2].int64 ?? 0, zone: row[3].int64 ?? 0)
            if row[4].bool == true { open.append(store) } else { closed.append(store) }
        }
        return (open, closed)
    }

    /// The open stores among `ids`.
    public func openStores(_ ids: [Int64]) async throws -> [StoreInfo] {
        guard !ids.isEmpty else { return [] }
        return try await pool.withConnection {
            try await $0.query(
                """
                SELECT store_id, name, category_id, zone_id FROM stores
                WHERE store_id = ANY($1::bigint[]) AND is_open
                """, [ids])
        }.rows.compactMap { row in
            row[0].int64.map {
                StoreInfo(id: $0, name: row[1].string ?? "", category: row[2].int64 ?? 0, zone: row[3].int64 ?? 0)
            }
        }
    }

    /// The latest run's tally of visits per store.
    public func popularity() async throws -> [Int64: Int64] {
        let rows = try await pool.withConnection {
            try await $0.query("SELECT store_id, visits FROM \(StoreRecommendationSchema.popularityTable)")
        }
        var popularity: [Int64: Int64] = [:]
        for row in rows.rows {
            if let store = row[0].int64, let visits = row[1].int64 { popularity[store] = visits }
        }
        return popularity
    }

    /// Replaces the tally with a run's (stores it did not see drop out).
    public func savePopularity(_ visits: [Int64: Int64], run: Int64) async throws {
        let stores = Array(visits.keys)
        try await pool.withConnection { connection in
            try await connection.transaction { transaction in
                try await transaction.query(
                    """
                    INSERT INTO \(StoreRecommendationSchema.popularityTable) AS p (store_id, visits, run)
                    SELECT unnest($1::bigint[]), unnest($2::bigint[]), $3
                    ON CONFLICT (store_id) DO UPDATE SET visits = excluded.visits, run = excluded.run, updated_at = now()
                    WHERE p.run <= excluded.run
                    """, [stores, stores.map { visits[$0]! }, run])
                try await transaction.query(
                    "DELETE FROM \(StoreRecommendationSchema.popularityTable) WHERE run < $1", [run])
            }
        }
    }

    /// Each user's visits since `since`, per store: one statement for the whole batch, one
    /// branch per shard that holds some of its users (never one query per user), read by
    /// index only (migration 106) and returned as integers.
    public func visits(of users: [Int64], since: Date) async throws -> [Int64: [(store: Int64, count: Int64)]] {
        var byShard: [Int: [Int64]] = [:]
        for user in users { byShard[EntryIngestSchema.shard(of: user), default: []].append(user) }
        guard !byShard.isEmpty else { return [:] }
        var branches: [String] = []
        var parameters: [(any PostgresEncodable)?] = [since]
        for shard in byShard.keys.sorted() {
            parameters.append(byShard[shard]!)
            branches.append(
                """
                SELECT user_id, store_id, count(*) FROM \(EntryIngestSchema.shardTable(shard))
                WHERE user_id = ANY($\(parameters.count)::bigint[]) AND entered_at >= $1 GROUP BY user_id, store_id
                """)
        }
        let sql = branches.joined(separator: " UNION ALL ")
        let bound = parameters
        let rows = try await pool.withConnection { try await $0.integers(sql, bound) }
        var visits: [Int64: [(store: Int64, count: Int64)]] = [:]
        for row in 0..<rows.count {
            visits[rows[row, 0], default: []].append((rows[row, 1], rows[row, 2]))
        }
        return visits
    }
}
