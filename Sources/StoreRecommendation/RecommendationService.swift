import CoreMetrics
import Foundation
import Logging
import PrewarmRuntime
import Redis
import ServiceLifecycle
import Synchronization

/// Which level of the read path served an answer.
public enum RecommendationSource: String, Sendable, Codable, CaseIterable {
    /// The user's own list.
    case personal
    /// The default list the scorer computed (popular stores).
    case `default`
    /// Random open stores, stored as the default when it was missing.
    case random
    /// PostgreSQL: the caches lacked what the answer needed (or Redis is down).
    case database
}

/// An answer of the read path.
public struct Recommendation: Sendable, Codable, Equatable {
    public var source: RecommendationSource
    public var userID: Int64?
    public var stores: [StoreInfo]

    enum CodingKeys: String, CodingKey {
        case source, stores
        case userID = "user_id"
    }
}

/// Both Redis and PostgreSQL failed: nothing can be answered.
public struct RecommendationUnavailable: Error, CustomStringConvertible {
    public let redis: String
    public let database: String
    public var description: String {
        "recommendations are unavailable: Redis (\(redis)) and PostgreSQL (\(database)) both failed"
    }
}

/// The read path's lifetimes and bounds.
public struct ReadPathOptions: Sendable {
    public var listLength = 4
    /// Details the read path caches after a database read.
    public var detailsTTL: Duration = .seconds(26 * 3600)
    /// The "no such open store" marker (penetration).
    public var missingTTL: Duration = .seconds(60)
    /// A default list of random stores.
    public var randomTTL: Duration = .seconds(600)
    /// A default list rebuilt from the database.
    public var databaseTTL: Duration = .seconds(3600)
    /// In the last stretch of the default list's life, requests refresh it early, more likely
    /// the nearer its end.
    public var refreshAhead: Duration = .seconds(600)
    /// How long a request waits for another pod's rebuild before reading the database itself.
    public var rebuildWait: Duration = .milliseconds(2000)
    /// With Redis down, the database's default list is reused for this long.
    public var databaseMemo: Duration = .seconds(5)
    /// Store details are remembered in the process this long (`DetailsNearCache`); zero: every
    /// answer reads them from Redis.
    public var detailsNearCache: Duration = .zero
    public var weights: ScoringWeights = .standard

    public init() {}
}

/// The "guess you like" read path: the user's list, then the default list (refreshed ahead
/// of its expiry by one request), then random open stores stored as the default by one script
/// (so concurrent requests agree), then PostgreSQL behind a single flight held across pods
/// (a Redis lock) and within the process, so a missing cache is rebuilt by one request. Store
/// details come from one MGET; an id with no open store behind it gets a short-lived marker.
/// With Redis down it answers from PostgreSQL; with both down it throws
/// `RecommendationUnavailable`.
///
/// It is a `Service`: early refreshes run in its own loop, never in a request.
public final class RecommendationService: Service {
    public let cache: RecommendationCache
    public let data: StoreData
    public let options: ReadPathOptions
    private let logger: Logger
    private let redisDownLog = LogThrottle(every: .seconds(5))
    private let flights = SingleFlight<String, [StoreInfo]>()
    private let refreshes: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    private let refreshing = Atomic<Bool>(false)
    private let memo = Mutex<(stores: [StoreInfo], at: ContinuousClock.Instant)?>(nil)
    private let answers: [RecommendationSource: Counter]
    private let databaseReads: (lists: Counter, details: Counter)
    private let near: DetailsNearCache?

    public init(
        cache: RecommendationCache, data: StoreData, options: ReadPathOptions, logger: Logger,
        metricsFactory: any MetricsFactory
    ) {
        self.cache = cache
        self.data = data
        self.options = options
        self.logger = logger
        self.near = options.detailsNearCache > .zero ? DetailsNearCache(lifetime: options.detailsNearCache) : nil
        self.refreshes = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        self.answers = Dictionary(
            uniqueKeysWithValues: RecommendationSource.allCases.map {
                (
                    $0,
                    Counter(
                        label: "prewarm_recommend_answers_total", dimensions: [("source", $0.rawValue)],
                        factory: metricsFactory)
                )
            })
        self.databaseReads = (
            Counter(
                label: "prewarm_recommend_database_reads_total", dimensions: [("what", "list")], factory: metricsFactory
            ),
            Counter(
                label: "prewarm_recommend_database_reads_total", dimensions: [("what", "details")],
                factory: metricsFactory)
        )
    }

    /// Runs the early refreshes the requests ask for, one at a time, until shutdown.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            for await _ in self.refreshes.stream {
                await self.refreshDefault()
                self.refreshing.store(false, ordering: .relaxed)
            }
        }
    }

    public func recommend(user: Int64?) async throws -> Recommendation {
        let (source, stores) = try await answer(user: user)
        return Recommendation(source: source, userID: user, stores: stores.compactMap(\.info))
    }

    /// The answer as the HTTP body, the stores' cached JSON passed through undecoded:
    /// `{"source":…,"stores":[…],"user_id":…}`.
    public func recommendJSON(user: Int64?) async throws -> (source: RecommendationSource, body: [UInt8]) {
        let (source, stores) = try await answer(user: user)
        var body: [UInt8] = []
        body.reserveCapacity(64 + stores.reduce(0) { $0 + $1.bytes.count + 1 })
        body.append(contentsOf: #"{"source":""#.utf8)
        body.append(contentsOf: source.rawValue.utf8)
        body.append(contentsOf: #"","stores":["#.utf8)
        for (index, store) in stores.enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: store.bytes)
        }
        body.append(UInt8(ascii: "]"))
        if let user {
            body.append(contentsOf: #","user_id":"#.utf8)
            body.append(contentsOf: String(user).utf8)
        }
        body.append(UInt8(ascii: "}"))
        return (source, body)
    }

    private func answer(user: Int64?) async throws -> (RecommendationSource, [StoreJSON]) {
        let answer: (RecommendationSource, [StoreJSON])
        do {
            answer = try await fromCache(user: user)
        } catch let redisError as RedisError {
            // Once per few seconds, not once per request: under load that would be thousands a second.
            let (log, suppressed) = redisDownLog.admit()
            if log {
                logger.warning(
                    "redis unavailable, answering from PostgreSQL",
                    metadata: ["error": "\(redisError)", "same_warnings_left_out": "\(suppressed)"])
            }
            do {
                answer = (.database, try await databaseDefaultRemembered().map(StoreJSON.init))
            } catch {
                throw RecommendationUnavailable(redis: "\(redisError)", database: "\(error)")
            }
        }
        answers[answer.0]?.increment()
        return answer
    }

    private func fromCache(user: Int64?) async throws -> (RecommendationSource, [StoreJSON]) {
        // The list (one round trip) with its stores' details (from the near cache, else one MGET);
        // the database only for what Redis lacks.
        if let user, let list = try await cache.listWithDetails(cache.userKey(user), near: near), !list.stores.isEmpty {
            let (stores, fromDatabase) = try await details(list.stores, cached: list.details)
            if !stores.isEmpty { return (fromDatabase ? .database : .personal, stores) }
        }
        if let list = try await cache.listWithDetails(cache.defaultKey, remaining: true, near: near) {
            // A random default lives its lifetime: refreshing it early would read the database
            // right after the random fill spared it.
            if let remaining = list.remaining, list.origin != "random" { considerEarlyRefresh(remaining: remaining) }
            let (stores, fromDatabase) = try await details(list.stores, cached: list.details)
            if !stores.isEmpty { return (fromDatabase ? .database : Self.source(of: list.origin), stores) }
        }
        if let list = try await cache.fillDefaultAtRandom(count: options.listLength, ttl: options.randomTTL) {
            let (stores, fromDatabase) = try await details(list.stores)
            if !stores.isEmpty { return (fromDatabase ? .database : Self.source(of: list.origin), stores) }
        }
        return (.database, try await rebuildDefault().map(StoreJSON.init))
    }

    /// The level of an answer served from a cached default list: random for a random fill,
    /// else default, whoever wrote it (one rebuilt from PostgreSQL and read from Redis since
    /// is no database answer).
    static func source(of origin: String) -> RecommendationSource {
        origin == "random" ? .random : .default
    }

    /// The details of `stores` in list order: one MGET; what the cache lacks is read from the
    /// database (one read for the same ids at a time) and cached, ids with no open store marked.
    func details(
        _ stores: [Int64], cached known: [Int64: RecommendationCache.Details]? = nil
    ) async throws -> (stores: [StoreJSON], fromDatabase: Bool) {
        let cached: [Int64: RecommendationCache.Details]
        if let known {
            cached = known
        } else {
            cached = try await cache.details(stores)
        }
        var found: [Int64: StoreJSON] = [:]
        var unknown: [Int64] = []
        for store in stores {
            switch cached[store] {
            case .found(let info): found[store] = info
            case .unknown, nil: unknown.append(store)
            case .missing: break
            }
        }
        if !unknown.isEmpty {
            let key = "details:" + unknown.sorted().map(String.init).joined(separator: ",")
            let read = try await flights.run(key) { [cache, data, options, databaseReads, unknown, near] in
                databaseReads.details.increment()
                let open = try await data.openStores(unknown)
                let missing = Set(unknown).subtracting(open.map(\.id))
                try await cache.cacheDetails(
                    open, missing: Array(missing), ttl: options.detailsTTL, markerTTL: options.missingTTL)
                near?.forget(unknown)
                return open
            }
            for info in read { found[info.id] = StoreJSON(info) }
        }
        return (stores.compactMap { found[$0] }, !unknown.isEmpty)
    }

    // MARK: - The default list

    /// In the last `refreshAhead` of the default list's life, a request asks for a refresh
    /// with a probability that grows to 1 at its end; the refresh loop runs one at a time.
    private func considerEarlyRefresh(remaining: Duration) {
        guard remaining < options.refreshAhead else { return }
        let chance = 1 - remaining.seconds / max(options.refreshAhead.seconds, 0.001)
        guard Double.random(in: 0..<1) < chance, !refreshing.exchange(true, ordering: .relaxed) else { return }
        refreshes.continuation.yield()
    }

    /// Rebuilds the default list from the database under the fleet's refresh lock, so one pod
    /// refreshes it for all.
    private func refreshDefault() async {
        do {
            let lock = cache.refreshLockKey
            guard try await cache.redis.send("SET", lock, "1", "NX", "PX", 10_000) == .status("OK") else { return }
            _ = try await rebuildFromDatabase(origin: "scorer")
            logger.info("default store list refreshed ahead of its expiry")
        } catch {
            logger.warning("early refresh of the default store list failed", metadata: ["error": "\(error)"])
        }
    }

    /// The database level: one rebuild in the process at a time; across pods, the holder of
    /// the rebuild lock rebuilds and the others wait for its result (then read the database
    /// themselves if it is slow to come).
    private func rebuildDefault() async throws -> [StoreInfo] {
        try await flights.run("default") { [self] in
            let lock = cache.rebuildLockKey
            if try await cache.redis.send("SET", lock, "1", "NX", "PX", options.rebuildWait.milliseconds * 5)
                == .status("OK")
            {
                do {
                    // Another pod may have rebuilt it between our miss and our lock: look again.
                    let stores: [StoreInfo]
                    if let cached = try await cachedDefault() {
                        stores = cached
                    } else {
                        stores = try await rebuildFromDatabase(origin: "database")
                    }
                    _ = try? await cache.redis.send("DEL", lock)
                    return stores
                } catch {
                    _ = try? await cache.redis.send("DEL", lock)
                    throw error
                }
            }
            let deadline = ContinuousClock.now + options.rebuildWait
            while ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(25))
                if let stores = try await cachedDefault() { return stores }
            }
            return try await databaseDefault()
        }
    }

    /// The default list as the cache holds it, with its stores' details; nil if it is missing.
    private func cachedDefault() async throws -> [StoreInfo]? {
        guard let (list, _) = try await cache.defaultList() else { return nil }
        let (stores, _) = try await details(list.stores)
        return stores.isEmpty ? nil : stores.compactMap(\.info)
    }

    /// Reads the stores and their popularity, computes the default list, and writes it with
    /// the stores' details and the open-store set.
    private func rebuildFromDatabase(origin: String) async throws -> [StoreInfo] {
        let (open, closed) = try await data.stores()
        let popularity = try await data.popularity()
        databaseReads.lists.increment()
        let catalog = StoreCatalog(open: open, popularity: popularity)
        let ids = catalog.popular(visitsPerStore: popularity, weights: options.weights, length: options.listLength)
        let ttl = origin == "database" ? options.databaseTTL : options.detailsTTL
        try await cache.writeStores(
            open: open, closed: closed.map(\.id), defaultList: (StoreList(stores: ids, run: 0, origin: origin), ttl)
        ) { options.detailsTTL }
        return ids.compactMap { catalog.open[$0] }
    }

    /// The default list computed from the database, without touching Redis.
    private func databaseDefault() async throws -> [StoreInfo] {
        let (open, _) = try await data.stores()
        let popularity = try await data.popularity()
        databaseReads.lists.increment()
        let catalog = StoreCatalog(open: open, popularity: popularity)
        return catalog.popular(visitsPerStore: popularity, weights: options.weights, length: options.listLength)
            .compactMap { catalog.open[$0] }
    }

    /// With Redis down: the database's default, read by one request at a time and reused
    /// for `databaseMemo`.
    private func databaseDefaultRemembered() async throws -> [StoreInfo] {
        if let remembered = memo.withLock({ $0 }), ContinuousClock.now - remembered.at < options.databaseMemo {
            return remembered.stores
        }
        let stores = try await flights.run("database-only") { try await self.databaseDefault() }
        memo.withLock { $0 = (stores, .now) }
        return stores
    }
}
