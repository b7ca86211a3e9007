import EntryIngest
import Foundation
import Redis
import TestSupport
import Testing

@Suite("Daily activity in Redis")
struct ActivityWriterTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!

    func event(_ user: Int64, _ time: String) -> StoreEntryEvent {
        StoreEntryEvent(
            eventID: UUID().uuidString.lowercased(), userID: user, storeID: 1,
            enteredAt: ISO8601DateFormatter().date(from: time)!)
    }

    @Test("a user counts once a day by the event's own day, late and replayed events included")
    func onceADay() async throws {
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        defer { Task { await redis.close() } }
        let writer = ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: TestEnvironment.uniqueName("t") + ":")
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
        #expect(try await redis.send("EXPIRETIME", writer.dayKey("20261120")).integer == Int64(dayEnd + 40 * 86_400))
        let monthEnd = ISO8601DateFormatter().date(from: "2026-11-30T16:00:00Z")!.timeIntervalSince1970
        #expect(try await redis.send("EXPIRETIME", month).integer == Int64(monthEnd + 70 * 86_400))
    }
}
