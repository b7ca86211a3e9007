import Foundation
import PrewarmConfiguration
import Redis

/// How many days of a month make a user active or hot.
public struct ActivityThresholds: Sendable, Equatable {
    public let activeDays: Int
    public let hotDays: Int

    public init(activeDays: Int = 7, hotDays: Int = 14) throws {
        guard (1...31).contains(activeDays) else {
            throw ConfigurationError("PREWARM_ACTIVE_USER_DAYS", "must be from 1 to 31, got \(activeDays)")
        }
        guard (activeDays...31).contains(hotDays) else {
            throw ConfigurationError(
                "PREWARM_HOT_USER_DAYS", "must be from PREWARM_ACTIVE_USER_DAYS (\(activeDays)) to 31, got \(hotDays)")
        }
        self.activeDays = activeDays
        self.hotDays = hotDays
    }

    public static let activeUserDays = Setting.integer(
        "PREWARM_ACTIVE_USER_DAYS", default: 7, in: 1...31, "days with a store entry that make a user active")
    public static let hotUserDays = Setting.integer(
        "PREWARM_HOT_USER_DAYS", default: 14, in: 1...31, "days with a store entry that make a user hot")
    public static let settings = [activeUserDays.description, hotUserDays.description]

    /// From `PREWARM_ACTIVE_USER_DAYS` and `PREWARM_HOT_USER_DAYS`.
    public init(_ reader: EnvironmentReader) throws {
        try self.init(activeDays: try reader.value(Self.activeUserDays), hotDays: try reader.value(Self.hotUserDays))
    }

    public func level(days: Int) -> ActivityLevel {
        days >= hotDays ? .hot : days >= activeDays ? .active : .inactive
    }
}

/// Hot users are active too: `level >= .active` selects both.
public enum ActivityLevel: Int, Sendable, Comparable, CaseIterable {
    case inactive, active, hot

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What the store-scorer asks about activity: the month's day count of given users, or
/// every user at a level this month. It reads the hashes `ActivityWriter` keeps; "this
/// month" is the month of `date` in the configured time zone.
public struct ActivityReader: Sendable {
    public let redis: any RedisClient
    public let timeZone: TimeZone
    public let thresholds: ActivityThresholds
    public let keyPrefix: String

    public init(redis: any RedisClient, timeZone: TimeZone, thresholds: ActivityThresholds, keyPrefix: String = "") {
        self.redis = redis
        self.timeZone = timeZone
        self.thresholds = thresholds
        self.keyPrefix = keyPrefix
    }

    public func monthKey(of date: Date) -> String {
        ActivityWriter.monthKey(LocalDay.month(date, in: timeZone), prefix: keyPrefix)
    }

    /// Each user's level this month (a user never seen is inactive), in one HMGET per
    /// `chunkSize` users.
    public func levels(of users: [Int64], at date: Date = Date(), chunkSize: Int = 1000) async throws -> [Int64:
        ActivityLevel]
    {
        let key = monthKey(of: date)
        var levels: [Int64: ActivityLevel] = [:]
        levels.reserveCapacity(users.count)
        var start = 0
        while start < users.count {
            let chunk = Array(users[start..<min(start + chunkSize, users.count)])
            let reply = try await redis.send(RedisCommand("HMGET", arguments: [key] + chunk.map { String($0) }))
            for (user, days) in zip(chunk, reply.array ?? []) {
                levels[user] = thresholds.level(days: Int(days.integer ?? 0))
            }
            start += chunkSize
        }
        return levels
    }

    /// Calls `body` with batches of the users at `level` or above this month, walking the
    /// month hash with HSCAN so a million users never sit in one reply. A user may appear
    /// twice if the hash is resized mid-walk (HSCAN's guarantee); callers are idempotent.
    /// Returns how many users were passed.
    @discardableResult
    public func forEachUser(
        atLeast level: ActivityLevel, at date: Date = Date(), scanCount: Int = 1000,
        _ body: ([Int64]) async throws -> Void
    ) async throws -> Int {
        let key = monthKey(of: date)
        var cursor = "0"
        var passed = 0
        repeat {
            let reply = try await redis.send("HSCAN", key, cursor, "COUNT", scanCount)
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let fields = parts[1].array
            else { throw RedisError(.protocolError, operation: "HSCAN", message: "unexpected reply \(reply)") }
            var users: [Int64] = []
            var index = 0
            while index + 1 < fields.count {
                if let user = fields[index].integer, let days = fields[index + 1].integer,
                    thresholds.level(days: Int(days)) >= level
                {
                    users.append(user)
                }
                index += 2
            }
            if !users.isEmpty {
                passed += users.count
                try await body(users)
            }
            cursor = next
        } while cursor != "0"
        return passed
    }
}
