import PrewarmRuntime

/// The key-account source data the pre-warm reads (owned upstream; these migrations create
/// it for the demo, the tests and a fresh deployment). Versions 300-399 belong to ka-prewarmer.
public enum KASchema {
    public static let migrations: [Migration] = [
        Migration(
            version: 300, name: "ka-prewarmer: shops, staff, products, marketing, shop users",
            statements: [
                """
                CREATE TABLE ka_shops (
                    shop_id bigint PRIMARY KEY CHECK (shop_id > 0),
                    name text NOT NULL,
                    level text NOT NULL DEFAULT 'ka',
                    info jsonb NOT NULL DEFAULT '{}',
                    updated_at timestamptz NOT NULL DEFAULT now())
                """,
                """
                CREATE TABLE ka_staff (
                    staff_id bigint PRIMARY KEY,
                    shop_id bigint NOT NULL REFERENCES ka_shops (shop_id),
                    name text NOT NULL,
                    role text NOT NULL)
                """,
                "CREATE INDEX ka_staff_shop ON ka_staff (shop_id, staff_id)",
                """
                CREATE TABLE ka_products (
                    product_id bigint PRIMARY KEY,
                    shop_id bigint NOT NULL REFERENCES ka_shops (shop_id),
                    name text NOT NULL,
                    price_cents bigint NOT NULL CHECK (price_cents >= 0),
                    stock integer NOT NULL DEFAULT 0)
                """,
                "CREATE INDEX ka_products_shop ON ka_products (shop_id, product_id)",
                """
                CREATE TABLE ka_marketing (
                    marketing_id bigint PRIMARY KEY,
                    shop_id bigint NOT NULL REFERENCES ka_shops (shop_id),
                    kind text NOT NULL CHECK (kind IN ('campaign', 'coupon')),
                    title text NOT NULL,
                    starts_at timestamptz,
                    ends_at timestamptz,
                    details jsonb NOT NULL DEFAULT '{}')
                """,
                "CREATE INDEX ka_marketing_shop ON ka_marketing (shop_id, marketing_id)",
                """
                CREATE TABLE ka_shop_users (
                    shop_id bigint NOT NULL REFERENCES ka_shops (shop_id),
                    user_id bigint NOT NULL,
                    nickname text NOT NULL,
                    level integer NOT NULL DEFAULT 0,
                    points bigint NOT NULL DEFAULT 0,
                    tags text NOT NULL DEFAULT '',
                    PRIMARY KEY (shop_id, user_id))
                """,
            ]),
        Migration(
            version: 301, name: "ka-prewarmer: the cached JSON of a shop user",
            statements: [
                // The fields of a shop user's key (`ka:user:{<shopId>:<subShard>}:<userId>`), named once: row_to_json over this
                // type is about a third cheaper than json_build_object, and a column added
                // to ka_shop_users upstream does not leak into the cache.
                """
                CREATE TYPE ka_user_cache AS (
                    user_id bigint, shop_id bigint, nickname text, level integer, points bigint, tags text)
                """
            ]),
        Migration(
            version: 302, name: "ka-prewarmer: a shop's users by sub-shard, the order the pre-warm reads them in",
            statements: [
                // `KASource.subShardSQL`: the same expression, or the planner does not use it.
                """
                CREATE INDEX IF NOT EXISTS ka_shop_users_sub_shard ON ka_shop_users
                    (shop_id, ((user_id % \(KACache.userSubShards) + \(KACache.userSubShards)) % \(KACache.userSubShards)), user_id)
                """
            ]),
    ]
}
