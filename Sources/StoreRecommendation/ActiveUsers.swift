import EntryIngest
import Foundation
import PrewarmRuntime
import Redis

/// The active users of a run: at least `minimumDays` distinct days with a store entry among
/// the `windowDays` days ending with the run's day, a rolling window over the day sets
/// entry-ingest keeps (`{act}:day:<yyyymmdd>`), not the calendar month: on the 1st of a month
/// last month's days still count.
///
/// The winner snapshots them once per run into a sorted set (`{act}:store-score:active:
/// <period>:<attempt>`, in the day sets' slot) ordered by log shard, then id, which the fan-out pages in that order: a batch
/// holds the users of one shard (two at a shard's end), so its visits are read from one table
/// in one index range. A pod taking the run over finds the snapshot there.
///
/// Every member has score 0 and reads `{shard, 2 digits}:{id, 19 digits}`, so the set's
/// lexical order is shard-then-id for any id up to `Int64.max` (a score is a double, exact
/// only below 2^53, and shard × 2^48 + id overflowed for ids near the maximum).
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

    /// In the day sets' slot (`{act}`): the snapshot is taken from them in one script.
    public func snapshotKey(_ run: JobRunInfo) -> String {
        "\(prefix){act}:store-score:active:\(run.period):\(run.attempt)"
    }

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
    /// keeps the active ones in the snapshot as `{shard}:{id}` members of score 0. The shard is
    /// computed from the id's decimal digits (Lua numbers are doubles: `tonumber` of an id
    /// near `Int64.max` is not exact); a member that is not a positive decimal id is left out.
    /// KEYS: snapshot, scratch, the day sets. ARGV: minimum days, retention ms, shards.
    /// Returns the number of active users.
    static let snapshot = RedisScript(
        name: "store-score-active",
        source: """
            if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('ZCARD', KEYS[1]) end
            local days = {}
            for i = 3, #KEYS do days[#days + 1] = KEYS[i] end
            redis.call('ZUNIONSTORE', KEYS[2], #days, unpack(days))
            local active = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf')
            local shards = tonumber(ARGV[3])
            local args = {}
            local count = 0
            local function flush()
              if #args > 0 then redis.call('ZADD', KEYS[1], unpack(args)) end
              args = {}
            end
            for _, id in ipairs(active) do
              if #id <= 19 and string.find(id, '^[1-9]%d*$') then
                local shard = 0
                for i = 1, #id do shard = (shard * 10 + string.byte(id, i) - 48) % shards end
                args[#args + 1] = 0
                args[#args + 1] = string.format('%02d:', shard) .. string.rep('0', 19 - #id) .. id
                count = count + 1
                if #args >= 2000 then flush() end
              end
            end
            flush()
            redis.call('DEL', KEYS[2])
            if count > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
            return count
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
            "ZRANGEBYLEX", snapshotKey(run), cursor == Int64.min ? "-" : "(" + Self.member(of: cursor), "+",
            "LIMIT", 0, limit)
        return (reply.array ?? []).compactMap { $0.string.flatMap(Self.user(of:)) }
    }

    /// A user's member in the snapshot: its shard, then its id, both zero-padded.
    static func member(of user: Int64) -> String {
        let shard = EntryIngestSchema.shard(of: user)
        let id = String(user)
        return (shard < 10 ? "0" : "") + "\(shard):" + String(repeating: "0", count: max(19 - id.count, 0)) + id
    }

    /// The user of a snapshot member.
    static func user(of member: String) -> Int64? {
        guard let colon = member.firstIndex(of: ":") else { return nil }
        return Int64(member[member.index(after: colon)...])
    }
}
