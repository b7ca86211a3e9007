import Foundation
import Postgres

/// What the pre-warm reads from PostgreSQL, its JSON built by the server (so the bytes go
/// to Redis as they come, with no decoding and encoding between).
public struct KASource: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// The shop's own keys' values: the shop, its staff, products and marketing; nil if the
    /// shop does not exist.
    public func shop(_ shop: Int64) async throws -> (shop: String, staff: String, products: String, marketing: String)?
    {
        let row = try await pool.withConnection { connection in
            try await connection.query(
                """
                SELECT json_build_object('shop_id', s.shop_id, 'name', s.name, 'level', s.level, 'info', s.info)::text,
                    (SELECT coalesce(json_agg(json_build_object('staff_id', staff_id, 'name', name, 'role', role)
                        ORDER BY staff_id), '[]') FROM ka_staff WHERE shop_id = s.shop_id)::text,
                    (SELECT coalesce(json_agg(json_build_object('product_id', product_id, 'name', name,
                        'price_cents', price_cents, 'stock', stock) ORDER BY product_id), '[]')
                        FROM ka_products WHERE shop_id = s.shop_id)::text,
                    (SELECT coalesce(json_agg(json_build_object('marketing_id', marketing_id, 'kind', kind,
                        'title', title, 'starts_at', starts_at, 'ends_at', ends_at, 'details', details)
                        ORDER BY marketing_id), '[]') FROM ka_marketing WHERE shop_id = s.shop_id)::text
                FROM ka_shops s WHERE s.shop_id = $1
                """, [shop]
            ).first
        }
        guard let row else { return nil }
        return (row[0].string ?? "{}", row[1].string ?? "[]", row[2].string ?? "[]", row[3].string ?? "[]")
    }

    /// The users of each shop (shops with none are missing from the answer), and which of
    /// the shops exist at all.
    public func userCounts(_ shops: [Int64]) async throws -> (existing: Set<Int64>, users: [Int64: Int64]) {
        guard !shops.isEmpty else { return ([], [:]) }
        let rows = try await pool.withConnection {
            try await $0.integers(
                """
                SELECT s.shop_id, (SELECT count(*) FROM ka_shop_users u WHERE u.shop_id = s.shop_id)
                FROM ka_shops s WHERE s.shop_id = ANY($1::bigint[])
                """, [shops])
        }
        var existing = Set<Int64>()
        var users: [Int64: Int64] = [:]
        for row in 0..<rows.count {
            existing.insert(rows[row, 0])
            users[rows[row, 0]] = rows[row, 1]
        }
        return (existing, users)
    }

    /// A user's id and cached JSON (`ka_user_cache`, migration 301).
    public static let userColumns =
        "user_id, row_to_json((user_id, shop_id, nickname, level, points, tags)::ka_user_cache)::text"

    /// A user's sub-shard in SQL, written as the index on it (migration 302) is, so the planner
    /// uses it: `KACache.subShard(ofUser:)`.
    static let subShardSQL =
        "((user_id % \(KACache.userSubShards) + \(KACache.userSubShards)) % \(KACache.userSubShards))"

    /// Up to `limit` users of the shop after `position`, by sub-shard then id: (id, JSON) rows.
    public func users(of shop: Int64, after position: KAUserPosition, limit: Int) async throws -> PostgresTexts {
        try await pool.withConnection {
            try await $0.texts(
                """
                SELECT \(Self.userColumns) FROM ka_shop_users
                WHERE shop_id = $1 AND (\(Self.subShardSQL), user_id) > ($2, $3)
                ORDER BY \(Self.subShardSQL), user_id LIMIT $4
                """, [shop, position.subShard, position.user, limit])
        }
    }

    /// The users of the shop in (`after`, `through`].
    public func users(of shop: Int64, after: KAUserPosition, through: KAUserPosition) async throws -> PostgresTexts {
        try await pool.withConnection {
            try await $0.texts(
                """
                SELECT \(Self.userColumns) FROM ka_shop_users
                WHERE shop_id = $1 AND (\(Self.subShardSQL), user_id) > ($2, $3)
                    AND (\(Self.subShardSQL), user_id) <= ($4, $5)
                ORDER BY \(Self.subShardSQL), user_id
                """, [shop, after.subShard, after.user, through.subShard, through.user])
        }
    }

    /// The users of the shop with ids in (`after`, `through`]: a failed batch's range as a
    /// version that read users by id alone recorded it.
    public func users(of shop: Int64, afterUser after: Int64, throughUser through: Int64) async throws
        -> PostgresTexts
    {
        try await pool.withConnection {
            try await $0.texts(
                """
                SELECT \(Self.userColumns) FROM ka_shop_users
                WHERE shop_id = $1 AND user_id > $2 AND user_id <= $3 ORDER BY user_id
                """, [shop, after, through])
        }
    }

    /// About `ratio` of the shop's user ids up to `through`, at random (and the first).
    public func sampleUsers(of shop: Int64, ratio: Double, through: KAUserPosition = .end) async throws -> [Int64] {
        let rows = try await pool.withConnection {
            try await $0.integers(
                """
                (SELECT user_id FROM ka_shop_users
                    WHERE shop_id = $1 AND (\(Self.subShardSQL), user_id) <= ($3, $4) AND random() < $2)
                UNION (SELECT user_id FROM ka_shop_users WHERE shop_id = $1
                    ORDER BY \(Self.subShardSQL), user_id LIMIT 1)
                """, [shop, ratio, through.subShard, through.user])
        }
        return (0..<rows.count).map { rows[$0, 0] }
    }
}
