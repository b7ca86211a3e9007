import Foundation
import JSONBytes
import PrewarmRuntime
import Redis

/// A list of stores as the cache keeps it: the store ids, the run that computed it
/// (`yyyymmdd × 1000 + attempt`; 0 for a list not made by a run) and where it came from.
public struct StoreList: Sendable, Codable, Equatable {
    public var stores: [Int64]
    public var run: Int64
    /// scorer, random or database.
    public var origin: String

    public init(stores: [Int64], run: Int64, origin: String = "scorer") {
        self.stores = stores
        self.run = run
        self.origin = origin
    }

    /// A list from its JSON, read byte by byte, the only way a list is read: `stores` (an
    /// array of 64-bit integers, required), `run` (0 when absent), `origin` ("scorer" when
    /// absent); other fields are skipped. nil when it is not a list.
    public init?(json bytes: [UInt8]) {
        var stores: [Int64]?
        var run: Int64 = 0
        var origin = "scorer"
        let read = JSONReader.read(bytes) {
            $0.object { reader, key in
                if reader.matches(key, "stores") {
                    stores = reader.integers()
                    return stores != nil
                } else if reader.matches(key, "run") {
                    guard let value = reader.integer() else { return false }
                    run = value
                } else if reader.matches(key, "origin") {
                    guard let value = reader.string() else { return false }
                    origin = value
                } else {
                    return reader.skipValue()
                }
                return true
            }
        }
        guard read, let stores else { return nil }
        self.init(stores: stores, run: run, origin: origin)
    }

    /// The run stamp of a period and attempt: later runs compare greater.
    public static func stamp(period: String, attempt: Int) -> Int64 { (Int64(period) ?? 0) * 1000 + Int64(attempt) }
}

/// A store's details as JSON bytes (`StoreInfo`, keys sorted), as the cache holds them: the
/// read path passes them on without decoding them.
public struct StoreJSON: Sendable, Equatable {
    public let id: Int64
    public let bytes: [UInt8]

    public init(id: Int64, bytes: [UInt8]) {
        self.id = id
        self.bytes = bytes
    }

    public init(_ store: StoreInfo) {
        self.init(id: store.id, bytes: (try? [UInt8](RecommendationCache.encoder.encode(store))) ?? [])
    }

    public var info: StoreInfo? { try? JSONDecoder().decode(StoreInfo.self, from: Data(bytes)) }
}

/// The store-recommendation keys in Redis and the scripts that write them:
/// - `STORE_RECOMMEND_ONE:{userId}`: a user's list (`StoreList` JSON), written by the
///   scorer, never over a list of a newer run;
/// - `STORE_RECOMMEND_DEFAULT`: the list for users without one and anonymous requests;
/// - `store:{id}`: a store's details (`StoreInfo` JSON), or the marker `null` (a short-lived
///   "no such open store", against repeated misses reaching the database);
/// - `STORE_OPEN_IDS{STORE_RECOMMEND_DEFAULT}`: the ids of the open stores, for the random
///   fill, in the default list's slot (the hash tag): the fill reads the one and writes the
///   other in one script, and the scorer swaps them in one transaction.
public struct RecommendationCache: Sendable {
    public let redis: any RedisClient
    /// Put before every key (tests use one of their own).
    public let prefix: String

    public init(redis: any RedisClient, prefix: String = "") {
        self.redis = redis
        self.prefix = prefix
    }

    public func userKey(_ user: Int64) -> String { "\(prefix)STORE_RECOMMEND_ONE:\(user)" }
    public var defaultKey: String { "\(prefix)STORE_RECOMMEND_DEFAULT" }
    public func storeKey(_ store: Int64) -> String { "\(prefix)store:\(store)" }
    public var openKey: String { RedisKeySlot.tagged("\(prefix)STORE_OPEN_IDS", besides: defaultKey) }
    var refreshLockKey: String { "\(prefix)STORE_RECOMMEND_DEFAULT:refresh" }
    var rebuildLockKey: String { "\(prefix)STORE_RECOMMEND_DEFAULT:rebuild" }

    /// Keys sorted, so that the same list is always the same bytes.
    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }

    /// The marker of a store id with no open store behind it.
    static let missingMarker = Array("null".utf8)

    // MARK: - Writes (the scorer)

    /// Writes lists unless the key holds a list of a newer run; an empty list removes the
    /// user's (a user whose stores all closed or vanished falls back to the default). With a
    /// fence, writes nothing (returns -1) once a newer attempt of the run began. KEYS: the
    /// fence's guard (`AttemptFence.guarding`; unfenced, any key), then the list keys. ARGV:
    /// the fence ('' for none), the run stamp, then per key its JSON ('' to remove) and its
    /// lifetime in ms.
    /// Returns how many it wrote or removed.
    static let writeLists = RedisScript(
        name: "store-lists",
        source: FenceScript.lua + """

            if ARGV[1] ~= '' and not fenced(KEYS[1], ARGV[1]) then return -1 end
            local run = tonumber(ARGV[2])
            local written = 0
            for i = 2, #KEYS do
              local newer = false
              local current = redis.call('GET', KEYS[i])
              if current then
                local stamp = tonumber(string.match(current, '"run":(%d+)'))
                if stamp and stamp > run then newer = true end
              end
              if not newer then
                local value = ARGV[2 * i - 1]
                if value == '' then
                  if current then redis.call('DEL', KEYS[i]) end
                else
                  redis.call('SET', KEYS[i], value, 'PX', ARGV[2 * i])
                end
                written = written + 1
              end
            end
            return written
            """)

    /// Writes the users' lists of one run in one script (one per slot on a cluster; an empty
    /// list removes the user's);
    /// returns how many were written (a list of a newer run is kept). With `fence`, throws
    /// `StaleAttempt` without writing once a newer attempt of the run began.
    @discardableResult
    public func writeLists(
        _ lists: [(user: Int64, stores: [Int64])], run: Int64, fence: AttemptFence? = nil, ttl: () -> Duration
    ) async throws -> Int {
        guard !lists.isEmpty else { return 0 }
        let encoder = Self.encoder
        let replies = try await redis.runFenced(
            Self.writeLists, fence: fence, keys: lists.map { userKey($0.user) }, shared: [run]
        ) { index, arguments in
            let stores = lists[index].stores
            arguments.append(stores.isEmpty ? [] : [UInt8](try encoder.encode(StoreList(stores: stores, run: run))))
            arguments.append(ttl().milliseconds)
        }
        return replies.reduce(0) { $0 + Int($1.reply.integer ?? 0) }
    }

    /// Adds a batch's visits per store to a run's tally, once per batch (a batch delivered
    /// again after a crash counts once). Whether the batch was counted now (false: it
    /// already was).
    @discardableResult
    public func addTally(_ tally: [Int64: Int64], batch: Int, to key: String, ttl: Duration) async throws -> Bool {
        try await BatchTally.add(tally.lazy.map { ($0.key, $0.value) }, batch: batch, to: key, ttl: ttl, on: redis)
    }

    /// Replaces the store details and the open-store set: open stores' details written,
    /// closed ones' removed, and so are those of stores the set held that have no row any more
    /// (deleted). The open stores' details first (spread over the cluster's slots, like every
    /// key read hot), then the set swapped in with the default list (when given) in one
    /// transaction of one slot (a reader never sees the open set without the default and
    /// fills the default at random meanwhile), then the others' details removed: the set
    /// never names a store whose details were not written.
    public func writeStores(
        open: [StoreInfo], closed: [Int64], defaultList: (list: StoreList, ttl: Duration)? = nil, ttl: () -> Duration
    ) async throws {
        let encoder = Self.encoder
        let rows = Set(open.map(\.id)).union(closed)
        let deleted = (try await redis.send("SMEMBERS", openKey).array ?? []).compactMap {
            $0.string.flatMap { Int64($0) }
        }
        .filter { !rows.contains($0) }
        let closed = closed + deleted
        var details: [RedisCommand] = []
        for store in open {
            details.append(
                RedisCommand("SET", storeKey(store.id), [UInt8](try encoder.encode(store)), "PX", ttl().milliseconds))
        }
        try await redis.checkedPipeline(details)

        var swap: [RedisCommand] = []
        if let defaultList {
            swap.append(
                RedisCommand(
                    "SET", defaultKey, [UInt8](try encoder.encode(defaultList.list)), "PX",
                    defaultList.ttl.milliseconds))
        }
        let staging = RedisKeySlot.tagged(openKey + ":staging", besides: defaultKey)
        swap.append(RedisCommand("DEL", staging))
        for chunk in stride(from: 0, to: open.count, by: 1000) {
            swap.append(
                RedisCommand("SADD", arguments: [staging] + open[chunk..<min(chunk + 1000, open.count)].map(\.id)))
        }
        if open.isEmpty {
            swap.append(RedisCommand("DEL", openKey))
        } else {
            swap.append(RedisCommand("RENAME", staging, openKey))
            swap.append(RedisCommand("PEXPIRE", openKey, ttl().milliseconds))
        }
        try await redis.transaction(swap)

        try await redis.checkedPipeline(closed.map { RedisCommand("DEL", storeKey($0)) })
    }

    /// Sets the default list.
    public func writeDefault(_ list: StoreList, ttl: Duration) async throws {
        try await redis.send("SET", defaultKey, [UInt8](try Self.encoder.encode(list)), "PX", ttl.milliseconds)
    }

    // MARK: - Reads (the API)

    /// A list (its store ids and origin) with what the cache knows of its stores, nil when the
    /// list is missing or unreadable: a GET (with the list's remaining lifetime when asked),
    /// then one MGET of its stores. Two plain commands cost Redis a few microseconds where a
    /// script doing the same costs it tens (each `redis.call` from Lua is dear), and on an
    /// event-loop connection the second round trip costs the caller little.
    /// With a near cache, the MGET asks only for the stores it lacks (none, mostly).
    public func listWithDetails(_ key: String, remaining: Bool = false, near: DetailsNearCache? = nil)
        async throws -> (
            stores: [Int64], origin: String, remaining: Duration?, details: [Int64: Details]
        )?
    {
        let replies =
            remaining
            ? try await redis.pipeline([RedisCommand("GET", key), RedisCommand("PTTL", key)])
            : try await redis.pipeline([RedisCommand("GET", key)])
        guard let bytes = replies[0].bytes, let list = StoreList(json: bytes) else { return nil }
        let ttl = remaining ? replies[1].integer ?? -1 : -1
        var (details, lacking) = near?.lookup(list.stores) ?? ([:], list.stores)
        if !lacking.isEmpty {
            let values = try await redis.mget(lacking.map { storeKey($0) })
            var read: [Int64: Details] = [:]
            for (store, value) in zip(lacking, values) { read[store] = Self.details(of: value, store: store) }
            near?.remember(read)
            details.merge(read) { $1 }
        }
        return (list.stores, list.origin, ttl >= 0 ? .milliseconds(ttl) : nil, details)
    }

    private static func details(of value: [UInt8]?, store: Int64) -> Details {
        guard let value, !value.isEmpty else { return .unknown }
        if value == missingMarker { return .missing }
        return .found(StoreJSON(id: store, bytes: value))
    }

    /// A user's list as stored.
    public func list(of user: Int64) async throws -> StoreList? {
        try await redis.send("GET", userKey(user)).bytes.flatMap(StoreList.init(json:))
    }

    /// The default list and how long it has left (nil when it never expires).
    public func defaultList() async throws -> (list: StoreList, remaining: Duration?)? {
        let replies = try await redis.pipeline([RedisCommand("GET", defaultKey), RedisCommand("PTTL", defaultKey)])
        guard let bytes = replies[0].bytes, let list = StoreList(json: bytes) else { return nil }
        let ttl = replies[1].integer ?? -1
        return (list, ttl >= 0 ? .milliseconds(ttl) : nil)
    }

    /// Picks `count` random open stores as the default, unless a default exists; returns the
    /// default either way (so concurrent callers agree), nil when no store is open. The ids are
    /// written as the set holds them (decimal text): `cjson` would write them as doubles,
    /// wrong above 2^53. KEYS: default, open set. ARGV: count, lifetime ms.
    static let randomFill = RedisScript(
        name: "store-default-random",
        source: """
            local current = redis.call('GET', KEYS[1])
            if current then return current end
            local ids = redis.call('SRANDMEMBER', KEYS[2], tonumber(ARGV[1]))
            if #ids == 0 then return false end
            local stores = {}
            for i = 1, #ids do
              if #ids[i] <= 19 and string.find(ids[i], '^[1-9]%d*$') then stores[#stores + 1] = ids[i] end
            end
            if #stores == 0 then return false end
            local list = '{"origin":"random","run":0,"stores":[' .. table.concat(stores, ',') .. ']}'
            redis.call('SET', KEYS[1], list, 'PX', ARGV[2])
            return list
            """)

    public func fillDefaultAtRandom(count: Int, ttl: Duration) async throws -> StoreList? {
        let reply = try await redis.run(
            Self.randomFill, keys: [defaultKey, openKey], arguments: [count, ttl.milliseconds])
        return reply.bytes.flatMap(StoreList.init(json:))
    }

    public enum Details: Sendable, Equatable {
        /// The details as the cache holds them (`StoreInfo` JSON).
        case found(StoreJSON)
        /// Marked as not an open store (a recent database miss).
        case missing
        /// Not in the cache.
        case unknown
    }

    /// The stores' details in one MGET (never one GET per id).
    public func details(_ stores: [Int64]) async throws -> [Int64: Details] {
        let values = try await redis.mget(stores.map { storeKey($0) })
        var details: [Int64: Details] = [:]
        for (store, value) in zip(stores, values) { details[store] = Self.details(of: value, store: store) }
        return details
    }

    /// Caches details read from the database, and markers for ids that have no open store.
    public func cacheDetails(_ found: [StoreInfo], missing: [Int64], ttl: Duration, markerTTL: Duration) async throws {
        let encoder = Self.encoder
        var commands = try found.map {
            RedisCommand("SET", storeKey($0.id), [UInt8](try encoder.encode($0)), "PX", ttl.milliseconds)
        }
        commands += missing.map { RedisCommand("SET", storeKey($0), Self.missingMarker, "PX", markerTTL.milliseconds) }
        try await redis.checkedPipeline(commands)
    }
}
