import EntryIngest
import Foundation
import PrewarmRuntime
import Redis

/// The active users of a run: at least `minimumDays` distinct days with a store entry among
/// the `windowDays` days ending with the run's day, a rolling window over the day sets
/// entry-ingest keeps (`act:day:{yyyymmdd}`), not the calendar month: on the 1st of a month
/// last month's days still count.
///
/// The winner snapshots them once per run into a sorted set (`store-score:active:{period}:
/// {attempt}`) ordered by log shard, then id, which the fan-out pages in that order: a batch
/// holds the users of one shard (two at a shard's end), so its visits are read from one table
/// in one index range. A pod taking the run over finds the snapshot there.
public struct ActiveUsers: FanOutSource {
    public let redis: any RedisClient
    public let timeZone: TimeZone
    public let minimumDays: Int
    public let windowDays: Int
    /// Put before every key (tests use one of their own); the same as entry-ingest's.
    public let prefix: String
    /// How long a snapshot is kept.
    public var retention: Duration = .seconds(2 * 86_400)

    public init(redis: any RedisClient, timeZone: TimeZone, minimumDays: Int, windowDays: Int, prefix: String = "") {
        self.redis = redis
        self.timeZone = timeZone
        self.minimumDays = minimumDays
        self.windowDays = windowDays
        self.prefix = prefix
    }

    public func snapshotKey(_ run: JobRunInfo) -> String { "\(prefix)store-score:active:\(run.period):\(run.attempt)" }

    /// The `yyyymmdd` of the window's days, the run's day last.
    public func windowDays(endingWith period: String) -> [String] {
        guard let day = Self.date(of: period, in: timeZone) else { return [] }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return (0..<windowDays).reversed().map { back in
            LocalDay.text(calendar.date(byAdding: .day, value: -back, to: day)!, in: timeZone)
        }
    }

    /// Noon of a `yyyymmdd` day in the zone (noon: never in a DST gap).
    static func date(of period: String, in timeZone: TimeZone) -> Date? {
        guard period.count >= 8, let year = Int(period.prefix(4)), let month = Int(period.dropFirst(4).prefix(2)),
            let day = Int(period.dropFirst(6).prefix(2))
        else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar.date(from: DateComponents(year: year, month: month, day: day, hour: 12))
    }

    /// Counts each user's days over the window (the day sets summed into a sorted set), then
    /// keeps the active ones in a sorted set scored by shard × 2^48 + id. KEYS: snapshot,
    /// scratch, the day sets. ARGV: minimum days, retention ms, shards. Returns the number of
    /// active users.
    static let snapshot = RedisScript(
        name: "store-score-active",
        source: """
            if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('ZCARD', KEYS[1]) end
            local days = {}
            for i = 3, #KEYS do days[#days + 1] = KEYS[i] end
            redis.call('ZUNIONSTORE', KEYS[2], #days, unpack(days))
            local active = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
            for i = 1, #active, 1000 do
              local args = {}
              for j = i, math.min(i + 999, #active) do
                local id = tonumber(active[j])
                args[#args + 1] = (id % tonumber(ARGV[3])) * 281474976710656 + id
                args[#args + 1] = active[j]
              end
              redis.call('ZADD', KEYS[1], unpack(args))
            end
            redis.call('DEL', KEYS[2])
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return #active
            """)

    /// Takes the run's snapshot if it has none yet; returns how many users are active.
    @discardableResult
    public func takeSnapshot(for run: JobRunInfo) async throws -> Int {
        let days = windowDays(endingWith: run.period).map { ActivityWriter.dayKey($0, prefix: prefix) }
        let keys = [snapshotKey(run), snapshotKey(run) + ":scratch"] + days
        let reply = try await redis.run(
            Self.snapshot, keys: keys, arguments: [minimumDays, retention.milliseconds, EntryIngestSchema.shardCount])
        return Int(reply.integer ?? 0)
    }

    public func count(for run: JobRunInfo) async throws -> Int? {
        Int(try await redis.send("ZCARD", snapshotKey(run)).integer ?? 0)
    }

    /// The next users after `cursor` (the last id of the previous page) in shard-then-id order.
    public func page(for run: JobRunInfo, after cursor: Int64, limit: Int) async throws -> [Int64] {
        let reply = try await redis.send(
            "ZRANGEBYSCORE", snapshotKey(run), cursor == Int64.min ? "-inf" : "(\(Self.score(of: cursor))", "+inf",
            "LIMIT", 0, limit)
        return (reply.array ?? []).compactMap(\.integer)
    }

    /// A user's place in the snapshot: its shard, then its id (ids below 2^48: exact in a double).
    static func score(of user: Int64) -> Int64 {
        Int64(EntryIngestSchema.shard(of: user)) * 281_474_976_710_656 + user
    }
}
