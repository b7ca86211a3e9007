import PrewarmRuntime

/// The store-scorer's table: each store's visits in the window as the latest run tallied
/// them (over the active users' visits), for tie-breaks in the next run and for the
/// recommend-api's database level. Versions 200-299 belong to store recommendation.
public enum StoreRecommendationSchema {
    public static let popularityTable = "store_popularity"

    public static let migrations: [Migration] = [
        Migration(
            version: 200, name: "store-scorer: store popularity",
            statements: [
                """
                CREATE TABLE store_popularity (
                    store_id bigint PRIMARY KEY,
                    visits bigint NOT NULL CHECK (visits >= 0),
                    run bigint NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now())
                """
            ])
    ]
}
