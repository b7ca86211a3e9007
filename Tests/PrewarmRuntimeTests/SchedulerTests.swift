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

    @Test("a malformed schedule is refused with the accepted forms")
    func malformed() {
        for text in ["daily@24:00", "daily@7", "hourly@05", "weekly@:10", "hourly@:60"] {
            #expect(throws: ScheduleError.self, "\(text)") { try Schedule(parsing: text) }
        }
        #expect(Schedule.daily(hour: 0, minute: 1).description == "daily@00:01")
    }
}

@Suite("Scheduler against Redis")
struct SchedulerTests {
    actor Counter {
        private(set) var runs: [JobRun] = []
        func add(_ run: JobRun) { runs.append(run) }
    }

    private func pods(_ count: Int, job: String, counter: Counter) async throws -> [Scheduler] {
        var pods: [Scheduler] = []
        for index in 0..<count {
            let redis = try await RedisConnection.connect(try TestEnvironment.redis())
            let fanOut = ScheduledJob(name: job, schedule: .daily(hour: 0, minute: 1)) { run in
                try await Task.sleep(for: .milliseconds(50))  // long enough for the others to race it
                await counter.add(run)
            }
            pods.append(
                Scheduler(
                    jobs: [fanOut], timeZone: TimeZone(identifier: "Asia/Shanghai")!, flags: RedisFlags(redis: redis),
                    owner: "pod-\(index)", logger: Logger(label: "test.scheduler")))
        }
        return pods
    }

    @Test("at a scheduled fire, of several pods exactly one runs the fan-out")
    func scheduledRace() async throws {
        let job = TestEnvironment.uniqueName("job")
        let counter = Counter()
        let pods = try await pods(3, job: job, counter: counter)
        let fire = Date()
        let outcomes = try await withThrowingTaskGroup(of: JobRunOutcome.self) { group in
            for pod in pods { group.addTask { try await pod.fire(pod.jobs[0], at: fire) } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(await counter.runs.count == 1)
        #expect(outcomes.filter { if case .ran = $0 { true } else { false } }.count == 1)
        #expect(outcomes.filter { if case .alreadyClaimed = $0 { true } else { false } }.count == 2)
    }

    @Test("a manual trigger takes the same path: refused for a period that ran, unless forced")
    func manualTrigger() async throws {
        let job = TestEnvironment.uniqueName("job")
        let counter = Counter()
        let pod = try await pods(1, job: job, counter: counter)[0]
        #expect(
            try await pod.trigger(job: job, period: "20261121")
                == .ran(JobRun(job: job, period: "20261121", forced: false)))
        #expect(try await pod.trigger(job: job, period: "20261121") == .alreadyClaimed(job: job, period: "20261121"))
        #expect(
            try await pod.trigger(job: job, period: "20261121", force: true)
                == .ran(JobRun(job: job, period: "20261121", forced: true)))
        #expect(await counter.runs.count == 2)
        await #expect(throws: InvalidMessage.self) { try await pod.trigger(job: "no-such-job") }
    }
}
