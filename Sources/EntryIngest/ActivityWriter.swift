import Foundation
import Postgres
import PrewarmRuntime
import Redis

/// Daily activity in Redis, by the day an event happened in the configured time zone (not
/// the day it was processed): `{act}:day:<yyyymmdd>` is the set of users seen that day, and
/// `{act}:month:<yyyymm>` counts, per user, the days of the month they were seen. A day
/// counts once per user however often it is replayed: the month count rises only when the
/// day set gains the user, in one script per batch (the users grouped by day). The hash tag
/// `{act}` keeps them in one slot of a cluster: a batch's script takes the days and months it
/// touches, the reconciler's a month's days, the scorer's union a window's. They are derived
/// data (rebuilt from the log) that only the scorer reads.
public struct ActivityWriter: Sendable {
    public let redis: any RedisClient
    public let timeZone: TimeZone
    /// Day sets live this long after their day ends; month hashes after their month ends.
    public var dayRetention: TimeInterval = 40 * 86_400
    public var monthRetention: TimeInterval = 70 * 86_400
    /// Put before every key; empty in production (tests use one of their own).
    public let keyPrefix: String

    public init(redis: any RedisClient, timeZone: TimeZone, keyPrefix: String = "") {
        self.redis = redis
        self.timeZone = timeZone
        self.keyPrefix = keyPrefix
    }

    public func dayKey(_ day: String) -> String { Self.dayKey(day, prefix: keyPrefix) }
    public func monthKey(_ month: String) -> String { Self.monthKey(month, prefix: keyPrefix) }

    /// The keys, in one place for the writer, `ActivityReader` and the store-scorer.
    public static func dayKey(_ day: String, prefix: String) -> String { "\(prefix){act}:day:\(day)" }
    public static func monthKey(_ month: String, prefix: String) -> String { "\(prefix){act}:month:\(month)" }

    /// Per day, a thousand users at a time: which are in the day set already (SMISMEMBER,
    /// Redis 6.2), add them all (SADD), and count the day for those that were not. Three
    /// calls per thousand users and one per new (user, day), rather than two per event.
    static let script = RedisScript(
        name: "entry-activity",
        source: """
            -- KEYS: day sets then month hashes. ARGV[1] = number of day keys; then per key its
            -- EXPIREAT; then per day: day key index, month key index, user count, the users
            -- (each once).
            local days = tonumber(ARGV[1])
            local keys = #KEYS
            local i = 2 + keys
            local added = 0
            while i <= #ARGV do
              local day = KEYS[tonumber(ARGV[i])]
              local month = KEYS[days + tonumber(ARGV[i + 1])]
              local last = i + 2 + tonumber(ARGV[i + 2])
              for from = i + 3, last, 1000 do
                local to = math.min(from + 999, last)
                local seen = redis.call('SMISMEMBER', day, unpack(ARGV, from, to))
                redis.call('SADD', day, unpack(ARGV, from, to))
                for k = 1, #seen do
                  if seen[k] == 0 then
                    redis.call('HINCRBY', month, ARGV[from + k - 1], 1)
                    added = added + 1
                  end
                end
              end
              i = last + 1
            end
            for k = 1, keys do redis.call('EXPIREAT', KEYS[k], ARGV[1 + k]) end
            return added
            """)

    /// Puts back users a day set lost (the reconciler's repair, from the log): adds those the
    /// set lacks, and sets their month count to the number of the month's day sets that have
    /// them, when that is more than the count there. A day lost alone leaves its month hash
    /// counting it already, so bumping the count (as ingest does) would count the day twice.
    static let restoreScript = RedisScript(
        name: "entry-activity-restore",
        source: """
            -- KEYS: the day set, its month hash, every day set of the month (the day's too).
            -- ARGV: the day's EXPIREAT, the month's EXPIREAT, the users (each once).
            local added = 0
            for from = 3, #ARGV, 1000 do
              local to = math.min(from + 999, #ARGV)
              local seen = redis.call('SMISMEMBER', KEYS[1], unpack(ARGV, from, to))
              local missing = {}
              for k = 1, #seen do
                if seen[k] == 0 then missing[#missing + 1] = ARGV[from + k - 1] end
              end
              if #missing > 0 then
                redis.call('SADD', KEYS[1], unpack(missing))
                local days = {}
                for k = 1, #missing do days[k] = 0 end
                for d = 3, #KEYS do
                  local member = redis.call('SMISMEMBER', KEYS[d], unpack(missing))
                  for k = 1, #member do days[k] = days[k] + member[k] end
                end
                local counts = redis.call('HMGET', KEYS[2], unpack(missing))
                for k = 1, #missing do
                  if days[k] > (tonumber(counts[k]) or 0) then
                    redis.call('HSET', KEYS[2], missing[k], days[k])
                  end
                end
                added = added + #missing
              end
            end
            redis.call('EXPIREAT', KEYS[1], ARGV[1])
            if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIREAT', KEYS[2], ARGV[2]) end
            return added
            """)

    /// Puts `users` back in the day set of `day` (`yyyymmdd`) where it lost them, with their
    /// month counts made right (`restoreScript`); returns how many it lacked.
    @discardableResult
    public func restore(day: String, users: [Int64]) async throws -> Int {
        guard !users.isEmpty, let (_, dayEnd, monthStart, monthEnd) = bounds(of: day) else { return 0 }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let monthDays = calendar.range(of: .day, in: .month, for: monthStart)?.count ?? 31
        var keys = [dayKey(day), monthKey(String(day.prefix(6)))]
        keys += (1...monthDays).map { dayKey(day.prefix(6) + (($0 < 10 ? "0" : "") + String($0))) }
        var arguments = RedisArguments()
        arguments.append(Int64(dayEnd.timeIntervalSince1970 + dayRetention))
        arguments.append(Int64(monthEnd.timeIntervalSince1970 + monthRetention))
        for user in users { arguments.append(user) }
        let reply = try await redis.run(Self.restoreScript, keys: RedisArguments(keys), arguments: arguments)
        return Int(reply.integer ?? 0)
    }

    /// The start of `day` (`yyyymmdd`) in the writer's zone and of the next day, and of its
    /// month and the next.
    func bounds(of day: String) -> (day: Date, nextDay: Date, month: Date, nextMonth: Date)? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        guard day.count == 8, let year = Int(day.prefix(4)), let month = Int(day.dropFirst(4).prefix(2)),
            let number = Int(day.suffix(2)),
            let start = calendar.date(from: DateComponents(year: year, month: month, day: number)),
            let monthStart = calendar.date(from: DateComponents(year: year, month: month)),
            let dayEnd = calendar.date(byAdding: .day, value: 1, to: start),
            let monthEnd = calendar.date(byAdding: .month, value: 1, to: monthStart)
        else { return nil }
        return (start, dayEnd, monthStart, monthEnd)
    }

    /// Records the events; returns how many (user, day) pairs were new.
    @discardableResult
    public func record(_ events: [StoreEntryEvent]) async throws -> Int {
        guard !events.isEmpty else { return 0 }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        // Events grouped by their local day, numbered (a string per event was a tenth of
        // the batch's time here).
        var numbers = LocalDay.Numbers(timeZone)
        // Each user once per day: the script counts the users a day set did not have.
        var dayIndex: [Int64: Int] = [:]
        var days: [(number: Int64, sample: Date, users: Set<Int64>)] = []
        for event in events {
            let day = numbers.day(of: event.enteredAt)
            if let index = dayIndex[day] {
                days[index].users.insert(event.userID)
            } else {
                dayIndex[day] = days.count
                days.append((day, event.enteredAt, [event.userID]))
            }
        }
        var dayKeys: [String] = []
        var dayExpiry: [Int64] = []
        var monthKeys: [String] = []
        var monthIndex: [String: Int] = [:]
        var monthExpiry: [Int64] = []
        var monthOfDay: [Int] = []
        // A day whose set has expired cannot tell a replayed visit from a first one: its events
        // are in the log, and not counted here again (the month would count the day twice).
        let now = Date().timeIntervalSince1970
        days.removeAll { day in
            let dayEnd = calendar.date(byAdding: .day, value: 1, to: calendar.startOfDay(for: day.sample))!
            return dayEnd.timeIntervalSince1970 + dayRetention <= now
        }
        guard !days.isEmpty else { return 0 }
        for (day, sample, _) in days {
            let text = LocalDay.text(ofDay: day)
            let month = String(text.prefix(6))
            dayKeys.append(dayKey(text))
            let dayEnd = calendar.date(byAdding: .day, value: 1, to: calendar.startOfDay(for: sample))!
            dayExpiry.append(Int64(dayEnd.timeIntervalSince1970 + dayRetention))
            if monthIndex[month] == nil {
                monthKeys.append(monthKey(month))
                monthIndex[month] = monthKeys.count
                let monthStart = calendar.date(
                    from: DateComponents(year: Int(text.prefix(4))!, month: Int(text.dropFirst(4).prefix(2))!))!
                let monthEnd = calendar.date(byAdding: .month, value: 1, to: monthStart)!
                monthExpiry.append(Int64(monthEnd.timeIntervalSince1970 + monthRetention))
            }
            monthOfDay.append(monthIndex[month]!)
        }
        // One group per day, so a batch sends one argument per event, not three; laid out
        // in one buffer as they are made.
        var arguments = RedisArguments()
        arguments.reserveCapacity(
            arguments: 1 + dayExpiry.count + monthExpiry.count + 3 * days.count + days.map(\.users.count).reduce(0, +),
            bytes: 12 * events.count + 256)
        arguments.append(dayKeys.count)
        for expiry in dayExpiry + monthExpiry { arguments.append(expiry) }
        for (index, (_, _, users)) in days.enumerated() {
            arguments.append(index + 1)
            arguments.append(monthOfDay[index])
            arguments.append(users.count)
            for user in users { arguments.append(user) }
        }
        let reply = try await redis.run(
            Self.script, keys: RedisArguments(dayKeys + monthKeys), arguments: arguments)
        return Int(reply.integer ?? 0)
    }
}
