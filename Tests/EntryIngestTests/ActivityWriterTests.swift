import CoreMetrics
import EntryIngest
import Foundation
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import TestSupport
import Testing

@Suite("Daily activity in Redis", .closesResources)
struct ActivityWriterTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!

    func event(_ user: Int64, _ time: String) -> StoreEntryEvent {
        StoreEntryEvent(
            eventID: UUID(), userID: user, storeID: 1,
            enteredAt: ISO8601DateFormatter().date(from: time)!)
    }

    @Test(
        "a user counts once a day by the event's own day, late and replayed events included",
        arguments: RedisTopology.allCases)
    func onceADay(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let writer = Self.longLived(
            ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: TestEnvironment.uniqueName("t") + ":"))
        let batch = [
            event(1, "2026-11-20T01:00:00Z"),  // 09:00 on the 20th in Shanghai
            event(1, "2026-11-20T10:00:00Z"),  // same user, same day
            event(1, "2026-11-20T16:30:00Z"),  // 00:30 on the 21st in Shanghai: another day
            event(2, "2026-11-20T05:00:00Z"),
            event(2, "2026-11-02T05:00:00Z"),  // late and out of order: lands on the 2nd
        ]
        #expect(try await writer.record(batch) == 4)
        #expect(try await writer.record(batch) == 0, "a replayed batch changes nothing")
        #expect(try await writer.record([event(1, "2026-11-20T23:00:00Z")]) == 0, "07:00 on the 21st: already counted")

        let month = writer.monthKey("202611")
        #expect(try await redis.send("HGET", month, 1).integer == 2)
        #expect(try await redis.send("HGET", month, 2).integer == 2)
        #expect(
            try await redis.send("SMEMBERS", writer.dayKey("20261120")).array?.compactMap(\.string).sorted() == [
                "1", "2",
            ])
        #expect(try await redis.send("SISMEMBER", writer.dayKey("20261121"), 1) == .integer(1))
        #expect(try await redis.send("SISMEMBER", writer.dayKey("20261102"), 2) == .integer(1))

        // Expiry follows the day and the month, not the processing time.
        let dayEnd = ISO8601DateFormatter().date(from: "2026-11-20T16:00:00Z")!.timeIntervalSince1970  // 21st 00:00 +08
        #expect(
            try await redis.send("EXPIRETIME", writer.dayKey("20261120")).integer == Int64(dayEnd + writer.dayRetention)
        )
        let monthEnd = ISO8601DateFormatter().date(from: "2026-11-30T16:00:00Z")!.timeIntervalSince1970
        #expect(try await redis.send("EXPIRETIME", month).integer == Int64(monthEnd + writer.monthRetention))
    }

    /// The fixed dates of these tests (2026) kept until 2036: past its retention a day is not
    /// counted (the next test), and Redis drops a key whose expiry is past.
    static func longLived(_ writer: ActivityWriter) -> ActivityWriter {
        var writer = writer
        writer.dayRetention = 3650 * 86_400
        writer.monthRetention = 3650 * 86_400
        return writer
    }

    @Test(
        "a day past its set's retention (40 days) is not counted, however often replayed; a recent one expires 40 days after it ends",
        arguments: RedisTopology.allCases)
    func pastRetention(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let writer = ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: TestEnvironment.uniqueName("t") + ":")
        let old = Date().addingTimeInterval(-45 * 86_400)
        let recent = Date().addingTimeInterval(-86_400)
        let oldVisit = StoreEntryEvent(eventID: UUID(), userID: 7, storeID: 1, enteredAt: old)
        let recentVisit = StoreEntryEvent(eventID: UUID(), userID: 7, storeID: 1, enteredAt: recent)
        #expect(try await writer.record([oldVisit, recentVisit]) == 1)
        #expect(try await writer.record([oldVisit]) == 0, "replayed: its day set is gone, so it is not counted again")
        let oldDay = LocalDay.text(old, in: shanghai)
        #expect(try await redis.send("EXISTS", writer.dayKey(oldDay)) == .integer(0))
        let oldMonth = writer.monthKey(String(oldDay.prefix(6)))
        let recentDay = LocalDay.text(recent, in: shanghai)
        let recentMonth = writer.monthKey(String(recentDay.prefix(6)))
        let oldCount = try await redis.send("HGET", oldMonth, 7).integer
        #expect(oldCount == (oldMonth == recentMonth ? 1 : nil), "only the recent day counted")
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = shanghai
        let dayEnd = calendar.date(byAdding: .day, value: 1, to: calendar.startOfDay(for: recent))!
        #expect(
            try await redis.send("EXPIRETIME", writer.dayKey(recentDay)).integer
                == Int64(dayEnd.timeIntervalSince1970) + 40 * 86_400)
    }

    @Test(
        "a day of thousands of users, some seen before and some twice in the batch: each new user counted once",
        arguments: RedisTopology.allCases)
    func manyUsersOneDay(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let writer = Self.longLived(
            ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: TestEnvironment.uniqueName("t") + ":"))
        let at = ISO8601DateFormatter().date(from: "2026-11-20T03:00:00Z")!
        func seen(_ user: Int64) -> StoreEntryEvent {
            StoreEntryEvent(eventID: UUID(), userID: user, storeID: 1, enteredAt: at)
        }
        // Users 1...1500 seen first; then 1...3500 (more than the script's chunk of a
        // thousand), every third twice.
        #expect(try await writer.record((1...1500).map(seen)) == 1500)
        let batch: [StoreEntryEvent] = (Int64(1)...3500).flatMap { user in
            Array(repeating: seen(user), count: user % 3 == 0 ? 2 : 1)
        }
        #expect(try await writer.record(batch.shuffled()) == 2000)
        #expect(try await redis.send("SCARD", writer.dayKey("20261120")).integer == 3500)
        let counts = try await redis.send("HVALS", writer.monthKey("202611")).array?.compactMap(\.string)
        #expect(counts?.count == 3500)
        #expect(counts?.allSatisfy { $0 == "1" } == true)
    }

    @Test(
        "active and hot users by this month's day count, thresholds configurable; the whole month walked in batches",
        arguments: RedisTopology.allCases)
    func activeAndHotUsers(on topology: RedisTopology) async throws {
        let redis = try await topology.connect()
        let prefix = TestEnvironment.uniqueName("t") + ":"
        let writer = Self.longLived(ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: prefix))
        // User u is seen on u distinct days of November (twice on each), users 1...20; user
        // 100 only in October.
        var events: [StoreEntryEvent] = []
        for user in 1...20 {
            for day in 1...user {
                let time = "2026-11-\(day < 10 ? "0" : "")\(day)T03:00:00Z"
                events += [event(Int64(user), time), event(Int64(user), time)]
            }
        }
        events += (1...20).map { event(100, "2026-10-\($0 < 10 ? "0" : "")\($0)T03:00:00Z") }
        try await writer.record(events)

        let november = ISO8601DateFormatter().date(from: "2026-11-21T04:00:00Z")!
        let reader = ActivityReader(
            redis: redis, timeZone: shanghai, thresholds: try ActivityThresholds(), keyPrefix: prefix)
        let levels = try await reader.levels(of: [6, 7, 13, 14, 20, 100, 999], at: november, chunkSize: 3)
        #expect(levels == [6: .inactive, 7: .active, 13: .active, 14: .hot, 20: .hot, 100: .inactive, 999: .inactive])

        var active: [Int64] = []
        var calls = 0
        let passed = try await reader.forEachUser(atLeast: .active, at: november, scanCount: 2) { users in
            active += users
            calls += 1
        }
        #expect(Set(active) == Set(7...20), "users with 7 or more days, the October-only user excluded")
        #expect(passed == active.count)
        var hot: Set<Int64> = []
        try await reader.forEachUser(atLeast: .hot, at: november) { hot.formUnion($0) }
        #expect(hot == Set(14...20))

        // October's hash belongs to October: user 100 is hot there.
        let october = ISO8601DateFormatter().date(from: "2026-10-25T04:00:00Z")!
        #expect(try await reader.levels(of: [100], at: october) == [100: .hot])

        // Configurable: 3 and 5 days.
        let lenient = ActivityReader(
            redis: redis, timeZone: shanghai, thresholds: try ActivityThresholds(activeDays: 3, hotDays: 5),
            keyPrefix: prefix)
        #expect(try await lenient.levels(of: [2, 3, 5], at: november) == [2: .inactive, 3: .active, 5: .hot])
    }

    @Test("an event's day is its calendar day in the time zone, across DST changes and year ends")
    func dayOfEvent() {
        for zone in ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC"] {
            let timeZone = TimeZone(identifier: zone)!
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = timeZone
            for _ in 0..<2000 {
                let date = Date(timeIntervalSince1970: Double.random(in: 1_600_000_000...1_900_000_000))
                let parts = calendar.dateComponents([.year, .month, .day], from: date)
                #expect(
                    LocalDay.text(date, in: timeZone)
                        == LocalDay.format(parts.year!, parts.month!, parts.day!), "\(zone) \(date)")
            }
            // Minute by minute through the day around each change of offset, one cache of
            // offsets for all of them (as a batch uses it), each hour visited twice.
            var numbers = LocalDay.Numbers(timeZone)
            var change = timeZone.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: 1_767_225_600))
            var transitions = 0
            while let transition = change, transition.timeIntervalSince1970 < 1_830_297_600 {
                transitions += 1
                for pass in 0..<2 {
                    for minute in stride(from: -720, through: 720, by: pass == 0 ? 7 : 5) {
                        let date = transition.addingTimeInterval(Double(minute) * 60 + 13)
                        let parts = calendar.dateComponents([.year, .month, .day], from: date)
                        #expect(
                            LocalDay.text(ofDay: numbers.day(of: date))
                                == LocalDay.format(parts.year!, parts.month!, parts.day!), "\(zone) \(date)")
                    }
                }
                change = timeZone.nextDaylightSavingTimeTransition(after: transition)
            }
            #expect(transitions == (["Asia/Shanghai", "UTC"].contains(zone) ? 0 : 4), "\(zone): changes in 2026-27")
        }
    }

    @Test("thresholds out of range stop start-up naming the variable")
    func thresholdValidation() throws {
        #expect(throws: ConfigurationError.self) { try ActivityThresholds(activeDays: 10, hotDays: 5) }
        do {
            _ = try ActivityThresholds(EnvironmentReader(["PREWARM_HOT_USER_DAYS": "3"]))
            Issue.record("hot below active was accepted")
        } catch let error as ConfigurationError {
            #expect(error.variable == "PREWARM_HOT_USER_DAYS")
        }
        do {
            _ = try ActivityThresholds(EnvironmentReader(["PREWARM_ACTIVE_USER_DAYS": "zero"]))
            Issue.record("a word was accepted")
        } catch let error as ConfigurationError {
            #expect(error.variable == "PREWARM_ACTIVE_USER_DAYS")
        }
    }

    @Test(
        "Redis loses the activity: the guard rebuilds it from the log once, alerted; a lost day is rebuilt by the reconcile, months counted once",
        arguments: RedisTopology.allCases)
    func rebuiltFromTheLog(on topology: RedisTopology) async throws {
        let database = try await IngestDatabase.make()
        let redis = try await topology.connect()
        let prefix = TestEnvironment.uniqueName("rebuild") + ":"
        let writer = ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: prefix)
        let now = Date()
        var events: [StoreEntryEvent] = []
        for index in 0..<400 {
            let user = Int64(index % 90 + 1)
            let at = now.addingTimeInterval(-Double(index % 12) * 86_400 - 60)
            events.append(StoreEntryEvent(eventID: UUID(), userID: user, storeID: Int64(index % 20 + 1), enteredAt: at))
        }
        try await ShardWriter(database: database.connection).write(
            events.map { ($0, Store(id: $0.storeID, categoryID: $0.storeID % 4, zoneID: $0.storeID % 3)) })
        try await writer.record(events)
        let keys = try await allKeys(redis, prefix + "{act}:*")
        let before = try await snapshot(redis, keys)
        let reconciler = ActivityReconciler(
            pool: PostgresPool(database.connection), writer: writer, logger: Logger(label: "t"))
        let alerts = Alerts(
            worker: "t", logger: Logger(label: "t"), metricsFactory: NOOPMetricsHandler.instance, redis: redis)
        closeAfterTest { await alerts.close() }
        let activityGuard = ActivityGuard(
            reconciler: reconciler, checkEvery: .seconds(1), alerts: alerts, owner: "pod")

        // Everything lost (a restart without persistence): rebuilt, the same as it was.
        try await redis.send(RedisCommand("DEL", arguments: keys))
        #expect(try await activityGuard.check())
        #expect(try await snapshot(redis, keys) == before, "day sets and month counts as ingest left them")
        let userDays = before.filter { $0.key.contains("{act}:day") }.map(\.value.count).reduce(0, +)
        try await eventually("the alert") {
            let recent = try await Alerts.recent(redis, count: 100)
            return recent.contains { $0.kind == "activity-rebuilt" && $0.details["restored"] == String(userDays) }
        }
        // A day lost alone (a failover losing its last writes: the marker stays): the nightly run.
        let day = try #require(keys.first { $0.contains("{act}:day") })
        try await redis.send("DEL", day)
        #expect(try await activityGuard.check(), "the marker is there: the guard leaves it to the nightly run")
        #expect(try await redis.send("EXISTS", day) == .integer(0))
        let report = try await reconciler.run()
        #expect(report.rebuilt.count == 1 && report.restored > 0)
        #expect(try await snapshot(redis, keys) == before, "the lost day back, no month counted twice")
        #expect(try await reconciler.run().rebuilt.isEmpty, "nothing to do once whole")
    }

    @Test(
        "the log unreachable while Redis is empty: nothing is marked whole, and the next look rebuilds it all",
        arguments: RedisTopology.allCases)
    func rebuildWaitsForTheLog(on topology: RedisTopology) async throws {
        let database = try await IngestDatabase.make()
        let redis = try await topology.connect()
        let prefix = TestEnvironment.uniqueName("outage") + ":"
        let writer = ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: prefix)
        var events: [StoreEntryEvent] = []
        for index in 0..<60 {
            let at = Date().addingTimeInterval(-Double(index % 3) * 86_400 - 60)
            let user = Int64(index % 30 + 1)
            events.append(StoreEntryEvent(eventID: UUID(), userID: user, storeID: Int64(index % 5 + 1), enteredAt: at))
        }
        try await ShardWriter(database: database.connection).write(
            events.map { ($0, Store(id: $0.storeID, categoryID: 1, zoneID: 1)) })
        try await writer.record(events)
        let keys = try await allKeys(redis, prefix + "{act}:*")
        let before = try await snapshot(redis, keys)
        try await redis.send(RedisCommand("DEL", arguments: keys))

        // PostgreSQL gone for this pod: its look fails, and the marker stays unset.
        let gone = try await PostgresConnection.connect(IngestDatabase.configuration(database.server, database.schema))
        await gone.close()
        let cut = ActivityGuard(
            reconciler: ActivityReconciler(pool: PostgresPool(gone), writer: writer, logger: Logger(label: "t")),
            checkEvery: .seconds(1), alerts: nil, owner: "pod-1")
        await #expect(throws: (any Error).self) { try await cut.check() }
        #expect(try await redis.send("EXISTS", prefix + ActivityGuard.epochKey) == .integer(0), "not marked whole")
        #expect(try await allKeys(redis, prefix + "{act}:*").isEmpty)

        // Back (another pod, or this one's next look once its lease expired): rebuilt whole.
        let back = ActivityGuard(
            reconciler: ActivityReconciler(
                pool: PostgresPool(database.connection), writer: writer, logger: Logger(label: "t")),
            checkEvery: .seconds(1), alerts: nil, owner: "pod-2")
        try await eventually(timeout: .seconds(90), "the rebuild once the failed look's lease is gone") {
            try await back.check()
        }
        #expect(try await snapshot(redis, keys) == before)
        #expect(try await redis.send("EXISTS", prefix + ActivityGuard.epochKey) == .integer(1))
    }

    private func allKeys(_ redis: any RedisClient, _ pattern: String) async throws -> [String] {
        try await redis.keys(matching: pattern)
    }

    /// Each key's members (a day set) or field=value pairs (a month hash), sorted.
    private func snapshot(_ redis: any RedisClient, _ keys: [String]) async throws -> [String: [String]] {
        var values: [String: [String]] = [:]
        for key in keys {
            if key.contains("{act}:day") {
                values[key] = (try await redis.send("SMEMBERS", key).array ?? []).compactMap(\.string).sorted()
            } else {
                let flat = (try await redis.send("HGETALL", key).array ?? []).compactMap(\.string)
                values[key] = stride(from: 0, to: flat.count - 1, by: 2).map { flat[$0] + "=" + flat[$0 + 1] }.sorted()
            }
        }
        return values
    }
}
