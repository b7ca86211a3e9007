import EntryIngest
import Foundation
import PrewarmRuntime
import Redis
import StoreRecommendation
import TestSupport
import Testing

@Suite("Active users over a rolling window of day sets", .closesResources)
struct ActiveUsersTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!

    @Test(
        "on the 1st of a month, last month's days count: 7 days in the last 30 make a user active, 6 do not",
        arguments: RedisTopology.allCases)
    func firstOfTheMonth(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let prefix = TestEnvironment.uniqueName("act") + ":"
        let active = ActiveUsers(redis: redis, timeZone: shanghai, minimumDays: 7, windowDays: 30, prefix: prefix)
        let days = active.windowDays(endingWith: "20261201")
        #expect(days.count == 30 && days.first == "20261102" && days.last == "20261201")
        func seen(_ user: Int64, on days: [String]) async throws {
            for day in days { try await redis.send("SADD", ActivityWriter.dayKey(day, prefix: prefix), user) }
        }
        try await seen(1001, on: ["20261120", "20261121", "20261122", "20261123", "20261124", "20261125", "20261126"])
        try await seen(1002, on: ["20261120", "20261121", "20261122", "20261123", "20261124", "20261125"])
        // Seven days, but one of them before the window.
        try await seen(1003, on: ["20261101", "20261121", "20261122", "20261123", "20261124", "20261125", "20261126"])
        try await seen(1004, on: days)  // every day
        try await seen(1013, on: Array(days.suffix(7)))
        let run = JobRunInfo(job: "store-score", period: "20261201", attempt: 1, forced: false, due: Date())
        #expect(try await active.takeSnapshot(for: run) == 3)
        #expect(try await active.count(for: run) == 3)
        // In the order of their log shards (id % 16: 5, 9, 12), so a batch reads one table.
        #expect(try await active.page(for: run, after: Int64.min, limit: 10) == [1013, 1001, 1004])
        #expect(try await active.page(for: run, after: 1013, limit: 1) == [1001])
        #expect(try await active.page(for: run, after: 1001, limit: 10) == [1004])
        // Taken once per run: a later change of the day sets does not alter this run's users.
        try await seen(1002, on: ["20261130"])
        #expect(try await active.takeSnapshot(for: run) == 3)
    }

    @Test(
        "ids from 1 to Int64.max are snapshotted and paged in shard-then-id order, none lost or repeated",
        arguments: RedisTopology.allCases)
    func extremeIDs(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let prefix = TestEnvironment.uniqueName("act") + ":"
        let active = ActiveUsers(redis: redis, timeZone: shanghai, minimumDays: 1, windowDays: 2, prefix: prefix)
        let users: [Int64] = [1, 15, 16, 9_007_199_254_740_993, Int64.max - 16, Int64.max - 1, Int64.max]
        let day = ActivityWriter.dayKey("20261201", prefix: prefix)
        try await redis.send(RedisCommand("SADD", arguments: [day] + users.map(String.init)))
        let run = JobRunInfo(job: "store-score", period: "20261201", attempt: 1, forced: false, due: Date())
        #expect(try await active.takeSnapshot(for: run) == users.count)
        var paged: [Int64] = []
        var cursor = Int64.min
        while true {
            let page = try await active.page(for: run, after: cursor, limit: 2)
            if page.isEmpty { break }
            paged += page
            cursor = page.last!
        }
        let expected = users.sorted { (EntryIngestSchema.shard(of: $0), $0) < (EntryIngestSchema.shard(of: $1), $1) }
        #expect(paged == expected)
    }
}
