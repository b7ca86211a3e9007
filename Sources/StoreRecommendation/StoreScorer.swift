import EntryIngest
import Foundation
import Logging
import PrewarmRuntime
import Redis

/// The nightly scoring run. Its winner snapshots the active users and refreshes the store
/// details and open-store set (`prepare`); every pod scores batches of users
/// (`JobBatchHandler`): one database statement for a batch's visits, one script writing its
/// lists, its visits tallied per store; whoever records the run's last batch computes the
/// default list from the tally and saves it as the stores' popularity (`finish`).
public final class StoreScorer: JobBatchHandler {
    public static let jobName = "store-score"

    public let options: ScoringOptions
    public let cache: RecommendationCache
    public let data: StoreData
    public let active: ActiveUsers
    public let timeZone: TimeZone
    private let logger: Logger
    private let catalogs = RunCatalogs()

    public init(
        options: ScoringOptions, cache: RecommendationCache, data: StoreData, timeZone: TimeZone, logger: Logger
    ) {
        self.options = options
        self.cache = cache
        self.data = data
        self.timeZone = timeZone
        self.logger = logger
        self.active = ActiveUsers(
            redis: cache.redis, timeZone: timeZone, minimumDays: options.activeDays,
            windowDays: options.activeWindowDays, prefix: cache.prefix)
    }

    /// The tally of a run: visits per store over the active users', summed by the batches.
    public func tallyKey(period: String, attempt: Int) -> String {
        cache.prefix + JobRuns.runScopedKey("store-score:tally:\(period):\(attempt)")
    }

    /// The start of the scoring window: the first of its days, at midnight in the zone.
    public func windowStart(period: String) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let day = ActiveUsers.date(of: period, in: timeZone) ?? Date()
        return calendar.startOfDay(for: calendar.date(byAdding: .day, value: -(options.windowDays - 1), to: day)!)
    }

    // MARK: - The winner

    /// Before the first batch (and again by a pod taking the run over): the activity made
    /// whole (rebuilt from the log if Redis lost it), the active users' snapshot, and the open
    /// stores' details and ids in the cache (closed and deleted ones removed).
    public func prepare(_ run: JobRunInfo) async throws {
        try await ActivityGuard(
            reconciler: ActivityReconciler(
                pool: data.pool,
                writer: ActivityWriter(redis: cache.redis, timeZone: timeZone, keyPrefix: cache.prefix),
                days: options.activeWindowDays, logger: logger),
            checkEvery: .seconds(60), alerts: nil, owner: "store-scorer"
        ).ensureWhole()
        let users = try await active.takeSnapshot(for: run)
        let stores = try await data.stores()
        try await cache.writeStores(open: stores.open, closed: stores.closed.map(\.id), ttl: options.ttlWithJitter)
        logger.info(
            "store scoring prepared",
            metadata: [
                "period": "\(run.period)", "active_users": "\(users)", "open_stores": "\(stores.open.count)",
                "closed_stores": "\(stores.closed.count)",
            ])
    }

    // MARK: - Every pod

    public func work(_ batch: JobBatch) async throws -> BatchResult {
        let t0 = ContinuousClock.now
        let run = StoreList.stamp(period: batch.period, attempt: batch.attempt)
        let catalog = try await catalogs.catalog(for: run) {
            let stores = try await self.data.stores()
            return StoreCatalog(open: stores.open, closed: stores.closed, popularity: try await self.data.popularity())
        }
        let t1 = ContinuousClock.now
        let visits = try await data.visits(of: batch.ids, since: windowStart(period: batch.period))
        let t2 = ContinuousClock.now
        var lists: [(user: Int64, stores: [Int64])] = []
        var tally: [Int64: Int64] = [:]
        for user in batch.ids {
            let userVisits = (visits[user] ?? []).map { catalog.visit(store: $0.store, count: $0.count) }
            for visit in userVisits { tally[visit.store, default: 0] += visit.count }
            // Empty when none of the user's stores is open any more: the user's old list is
            // removed, and the API answers the default instead of stores that are gone.
            lists.append((user, catalog.top(userVisits, weights: options.weights, length: options.listLength)))
        }
        let t3 = ContinuousClock.now
        try await cache.writeLists(lists, run: run, fence: AttemptFence(batch), ttl: options.ttlWithJitter)
        let t4 = ContinuousClock.now
        try await cache.addTally(
            tally, batch: batch.batch, to: tallyKey(period: batch.period, attempt: batch.attempt),
            ttl: .seconds(2 * 86_400))
        logger.debug(
            "batch scored",
            metadata: [
                "batch": "\(batch.batch)", "users": "\(batch.ids.count)", "catalog": "\(t1 - t0)",
                "visits": "\(t2 - t1)", "scoring": "\(t3 - t2)", "lists": "\(t4 - t3)",
                "tally": "\(ContinuousClock.now - t4)",
            ])
        return BatchResult(itemsDone: batch.ids.count)
    }

    // MARK: - The run's end

    /// The default list from the run's tally, and the tally saved as the stores' popularity.
    public func finish(_ run: JobRunProgress) async throws {
        let flat = try await cache.redis.send("HGETALL", tallyKey(period: run.period, attempt: run.attempt)).array ?? []
        var tally: [Int64: Int64] = [:]
        for index in stride(from: 0, to: flat.count - 1, by: 2) {
            if let store = flat[index].integer, let visits = flat[index + 1].integer { tally[store] = visits }
        }
        let stamp = StoreList.stamp(period: run.period, attempt: run.attempt)
        let catalog = StoreCatalog(open: try await data.stores().open, popularity: tally)
        let stores = catalog.popular(visitsPerStore: tally, weights: options.weights, length: options.listLength)
        try await cache.writeDefault(StoreList(stores: stores, run: stamp), ttl: options.ttlWithJitter())
        try await data.savePopularity(tally, run: stamp)
        logger.notice(
            "store scoring finished",
            metadata: [
                "period": "\(run.period)", "users": "\(run.itemsDone)", "seconds": "\(run.durationSeconds ?? 0)",
                "default": "\(stores)",
            ])
    }
}

/// The catalog of the run being scored, loaded once per run by each pod.
actor RunCatalogs {
    private var current: (run: Int64, catalog: Task<StoreCatalog, any Error>)?

    func catalog(for run: Int64, load: @escaping @Sendable () async throws -> StoreCatalog) async throws -> StoreCatalog
    {
        if let current, current.run == run {
            do {
                return try await current.catalog.value
            } catch {
                self.current = nil  // a failed load is tried again by the next batch
                throw error
            }
        }
        let task = Task { try await load() }
        current = (run, task)
        return try await task.value
    }
}
