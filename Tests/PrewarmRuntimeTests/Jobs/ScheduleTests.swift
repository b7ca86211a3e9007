import Foundation
import Logging
import Redis
import TestSupport
import Testing

@testable import PrewarmRuntime

@Suite("Schedules")
struct ScheduleTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!
    let newYork = TimeZone(identifier: "America/New_York")!

    func date(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

    @Test("daily@00:01 in Shanghai fires at 16:01 UTC, the next day once past")
    func daily() throws {
        let schedule = try Schedule(parsing: "daily@00:01")
        #expect(schedule == .daily(hour: 0, minute: 1))
        #expect(schedule.nextFire(after: date("2026-11-21T10:00:00Z"), in: shanghai) == date("2026-11-21T16:01:00Z"))
        #expect(schedule.nextFire(after: date("2026-11-21T16:01:00Z"), in: shanghai) == date("2026-11-22T16:01:00Z"))
        #expect(schedule.period(of: date("2026-11-21T16:01:00Z"), in: shanghai) == "20261122")
    }

    @Test("hourly@:05 fires every hour at five past, and its period names the hour")
    func hourly() throws {
        let schedule = try Schedule(parsing: "hourly@:05")
        #expect(schedule.nextFire(after: date("2026-11-21T10:04:59Z"), in: shanghai) == date("2026-11-21T10:05:00Z"))
        #expect(schedule.nextFire(after: date("2026-11-21T10:05:00Z"), in: shanghai) == date("2026-11-21T11:05:00Z"))
        #expect(schedule.period(of: date("2026-11-21T15:05:00Z"), in: shanghai) == "2026112123")
    }

    @Test("on a DST day that skips the hour, a daily job still fires once, right after the gap")
    func daylightSaving() {
        let schedule = Schedule.daily(hour: 2, minute: 30)  // 02:30 does not exist on 2026-03-08 in New York
        let fire = schedule.nextFire(after: date("2026-03-08T05:00:00Z"), in: newYork)
        #expect(fire == date("2026-03-08T07:00:00Z"))  // 03:00 EDT
        #expect(schedule.nextFire(after: fire, in: newYork) == date("2026-03-09T06:30:00Z"))
    }

    @Test("the latest fire at or before a moment: the period a pod starting then would catch up")
    func latestFire() throws {
        let hourly = try Schedule(parsing: "hourly@:00")
        #expect(hourly.latestFire(notAfter: date("2026-11-21T10:30:00Z"), in: shanghai) == date("2026-11-21T10:00:00Z"))
        #expect(hourly.latestFire(notAfter: date("2026-11-21T10:00:00Z"), in: shanghai) == date("2026-11-21T10:00:00Z"))
        let daily = Schedule.daily(hour: 2, minute: 0)  // 18:00 UTC the day before
        #expect(daily.latestFire(notAfter: date("2026-11-21T17:59:00Z"), in: shanghai) == date("2026-11-20T18:00:00Z"))
    }

    @Test("a period names its fire, and only a well-formed period of the job's kind does")
    func fireOfPeriod() throws {
        let daily = Schedule.daily(hour: 0, minute: 1)
        #expect(daily.fire(inPeriod: "20261122", in: shanghai) == date("2026-11-21T16:01:00Z"))
        let hourly = Schedule.hourly(minute: 0)
        #expect(hourly.fire(inPeriod: "2026112123", in: shanghai) == date("2026-11-21T15:00:00Z"))
        for bad in ["2026112", "20261322", "2026-11-22", "2026112223"] {
            #expect(daily.fire(inPeriod: bad, in: shanghai) == nil, "\(bad)")
        }
        #expect(hourly.fire(inPeriod: "2026112124", in: shanghai) == nil)
    }

    @Test("a malformed schedule is refused with the accepted forms")
    func malformed() {
        for text in ["daily@24:00", "daily@7", "hourly@05", "weekly@:10", "hourly@:60"] {
            #expect(throws: ScheduleError.self, "\(text)") { try Schedule(parsing: text) }
        }
        #expect(Schedule.daily(hour: 0, minute: 1).description == "daily@00:01")
    }
}
