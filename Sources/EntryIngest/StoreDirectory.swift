import Postgres

/// A store's place in the scoring dimensions.
public struct Store: Sendable, Equatable {
    public let id: Int64
    public let categoryID: Int64
    public let zoneID: Int64
    public let isOpen: Bool

    public init(id: Int64, categoryID: Int64, zoneID: Int64, isOpen: Bool = true) {
        self.id = id
        self.categoryID = categoryID
        self.zoneID = zoneID
        self.isOpen = isOpen
    }
}

/// The `stores` table held in memory: loaded at first use, again when an event names a
/// store it does not know (a store opened since), and when it is older than `maximumAge`.
/// Misses refresh at most once per `minimumRefreshInterval`, so a stream of events for a
/// store that does not exist cannot hammer the database.
public actor StoreDirectory {
    private let pool: PostgresPool
    private let maximumAge: Duration
    private let minimumRefreshInterval: Duration
    private var stores: [Int64: Store] = [:]
    private var loadedAt: ContinuousClock.Instant?

    public init(
        pool: PostgresPool, maximumAge: Duration = .seconds(300), minimumRefreshInterval: Duration = .seconds(1)
    ) {
        self.pool = pool
        self.maximumAge = maximumAge
        self.minimumRefreshInterval = minimumRefreshInterval
    }

    /// The stores with these ids that exist; an id missing from the result does not exist
    /// even after a refresh.
    public func lookup(_ ids: Set<Int64>) async throws -> [Int64: Store] {
        let now = ContinuousClock.now
        let stale = loadedAt.map { now - $0 > maximumAge } ?? true
        let missing = !ids.isSubset(of: stores.keys)
        let mayRefresh = loadedAt.map { now - $0 >= minimumRefreshInterval } ?? true
        if stale || (missing && mayRefresh) { try await refresh() }
        var found: [Int64: Store] = [:]
        for id in ids { if let store = stores[id] { found[id] = store } }
        return found
    }

    public func refresh() async throws {
        let rows = try await pool.withConnection {
            try await $0.query("SELECT store_id, category_id, zone_id, is_open FROM stores")
        }
        var loaded: [Int64: Store] = [:]
        for row in rows.rows {
            guard let id = row[0].int64, let category = row[1].int64, let zone = row[2].int64 else { continue }
            loaded[id] = Store(id: id, categoryID: category, zoneID: zone, isOpen: row[3].bool ?? false)
        }
        stores = loaded
        loadedAt = .now
    }
}
