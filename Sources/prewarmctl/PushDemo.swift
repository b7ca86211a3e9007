import BlockingIO
import BookRecPush
import DownstreamSimulation
import Foundation
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// `make demo`, part four: a day of "read later" targets in `task_data`; two push-producer
/// pods pre-warm them against the simulated A/B, recommendation and material services
/// (progress, calls in flight, users outside the experiment), then push one hour from the
/// cache (pushes, misses, miss rate), then run the hour again: no second push goes out.
extension Demo {
    func showBookRecPush(db: PostgresConnection, cache: RedisConnection) async throws {
        print("")
        let simulator = DownstreamSimulator(Self.simulatedBehaviour)
        let port = try FreePort.next()
        let serving = Task {
            try await simulator.serve(host: "127.0.0.1", port: port, logger: Logger(label: "prewarmctl.simulator"))
        }
        defer { serving.cancel() }
        try await withPods {
            try await bookRecPush(db: db, cache: cache, simulator: simulator, simulatorPort: port, pods: &$0)
        }
    }

    static var simulatedBehaviour: DownstreamSimulator.Behaviour {
        var behaviour = DownstreamSimulator.Behaviour()
        behaviour.latency = "uniform:5ms-15ms"
        behaviour.errorRate = 0.02
        behaviour.experimentShare = 0.8
        return behaviour
    }

    private func bookRecPush(
        db: PostgresConnection, cache: RedisConnection, simulator: DownstreamSimulator, simulatorPort: Int,
        pods: inout [ChildProcess]
    ) async throws {
        // Today's two tasks: 4,000 readers who finished a series, 3,000 following one (1,000 in
        // both), pushed at 20:00 to 23:00; and three rows upstream got wrong.
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let now = Date()
        let parts = calendar.dateComponents([.year, .month, .day], from: now)
        let day = String(format: "%04d%02d%02d", parts.year!, parts.month!, parts.day!)
        let options = BookRecOptions()
        let tasks = options.tasks(day: day)
        try await db.query(
            "DELETE FROM task_data WHERE task_id = ANY($1::text[])", ["{\(tasks.joined(separator: ","))}"])
        try await db.query(
            """
            INSERT INTO task_data (task_id, source_uid, project, push_hour, payload)
            SELECT $1, 700000 + u, 'novel', 20 + u % 4, '{"series_id": ' || (u % 300) || ', "chapter": ' || (u % 90) || '}'
            FROM generate_series(1, 4000) u
            UNION ALL
            SELECT $2, 700000 + u, 'novel', 20 + u % 4, '{"series_id": ' || (u % 300) || '}'
            FROM generate_series(3001, 6000) u
            UNION ALL
            VALUES ($1, NULL, 'novel', 21::smallint, '{}'), ($1, 709001, '', 21, '{}'), ($1, 709002, 'novel', 21, 'oops')
            """, [tasks[0], tasks[1]])
        print(
            "push:         task_data for \(day): 4,000 users of \(tasks[0]), 3,000 of \(tasks[1]) (1,000 in both), "
                + "push hours 20-23, and 3 malformed rows")
        print(
            "push:         simulated A/B, recommendation and material services on 127.0.0.1:\(simulatorPort) "
                + "(latency 5-15 ms, 2 % errors, 80 % of users in the experiment)")

        let token = UUID().uuidString
        let base = "http://127.0.0.1:\(simulatorPort)"
        let settings = [
            "PREWARM_PUSH_AB_URL": base + "/ab", "PREWARM_PUSH_REC_URL": base + "/rec",
            "PREWARM_PUSH_MATERIAL_URL": base + "/material", "PREWARM_PUSH_BATCH_SIZE": "200",
        ]
        let runs = Self.runs(cache)
        let ranToday = try await runs.progress(job: BookRecJobs.prewarmJob, period: day) != nil
        var started = ContinuousClock.now
        let ports = try await startPods("push-producer", count: 2, token: token, settings: settings, into: &pods)

        // 00:01's pre-warm. On a day no pod ran it (all were down at 00:01), the pods' first
        // check catches it up once by themselves; on a day it ran (an earlier demo), it is
        // triggered again by hand as a new attempt.
        if ranToday {
            started = .now
            let (status, body) = try await trigger(
                port: ports[0], token: token, job: BookRecJobs.prewarmJob, period: day)
            print(
                "push:         POST /jobs/\(BookRecJobs.prewarmJob)/trigger?period=\(day)&force=true -> \(status) \(body)"
            )
        } else {
            let deadline = options.prewarmDeadline
            let clock = calendar.dateComponents([.hour, .minute], from: Date())
            let late =
                clock.hour! * 60 + clock.minute! >= deadline
                ? String(
                    format:
                        "; it ends past its %02d:%02d deadline (PREWARM_PUSH_PREWARM_DEADLINE), so it is alerted late",
                    deadline / 60, deadline % 60) : ""
            print(
                "push:         no pod ran \(day)'s 00:01 pre-warm: the pods catch it up once at their first check "
                    + "(PREWARM_JOB_CHECK_S after start-up)\(late)")
        }
        let prewarm = try await watch(
            job: BookRecJobs.prewarmJob, period: day, cache: cache, simulator: simulator, started: started)
        let bookCache = BookRecCache(redis: cache)
        let counts = try await bookCache.counts(job: prewarm.job, period: prewarm.period, attempt: prewarm.attempt)
        let inFlight = simulator.stats.total.maxInFlight
        print(
            "push:         pre-warm \(prewarm.state.rawValue), took \(took(prewarm)): \(counts["cached"] ?? 0) cached in "
                + "rec:later_read:{uid} for 24 h, \(counts["not_in_experiment"] ?? 0) outside the experiment (skipped), "
                + "\(counts["malformed"] ?? 0) malformed, \(counts["failed"] ?? 0) failed after the final retry; "
                + "\(simulator.stats.total.calls) calls, \(simulator.stats.total.errors) answered 503 and retried, "
                + "at most \(inFlight) in flight (2 pods x PREWARM_PUSH_MAX_IN_FLIGHT 50)")
        let sample = try await cache.send("GET", bookCache.recommendationKey(700_001)).string ?? "(none)"
        print("push:         GET rec:later_read:700001 -> \(sample)")

        // The hour under way, if the pods caught it up at their first check, waited for the
        // pre-warm and runs now: let it end first, so that 21:00's pushes are told apart.
        let (thisHour, _) = Self.hourUnderWay(calendar)
        if thisHour != day + "21", let run = try await runs.progress(job: BookRecJobs.pushJob, period: thisHour),
            run.state != .skipped
        {
            _ = try await watch(
                job: BookRecJobs.pushJob, period: thisHour, cache: cache, simulator: simulator, started: .now,
                quiet: true)
        }

        // A few recommendations lost before the evening (evicted, say): the push counts them.
        let lost = (1...40).map { Int64(700_000 + $0 * 97) }
        try await cache.send(RedisCommand("DEL", arguments: lost.map { bookCache.recommendationKey($0) }))
        print("push:         deleted 40 cached recommendations (as an eviction would) to show misses")

        // 21:00's push, triggered now.
        let slot = day + "21"
        let pushTopic = TopicCatalog.bookRecommendationPush.name
        let before = try await highWatermarks(pushTopic).values.reduce(0, +)
        started = .now
        _ = try await trigger(port: ports[1], token: token, job: BookRecJobs.pushJob, period: slot)
        let hour = try await watch(
            job: BookRecJobs.pushJob, period: slot, cache: cache, simulator: simulator, started: started)
        let pushed = try await bookCache.counts(job: hour.job, period: hour.period, attempt: hour.attempt)
        let produced = try await highWatermarks(pushTopic).values.reduce(0, +) - before
        let misses = pushed["misses"] ?? 0
        let rate = Double(misses) / Double(max(misses + (pushed["hits"] ?? 0), 1))
        print(
            "push:         \(slot) \(hour.state.rawValue), took \(took(hour)) (\(format(.now - started)) from the "
                + "trigger): \(pushed["rows"] ?? 0) rows, "
                + "\(pushed["sent"] ?? 0) pushes produced to \(pushTopic) (\(produced) messages), "
                + "\(pushed["other_push"] ?? 0) users already pushed for their other task, "
                + "\(pushed["not_in_experiment"] ?? 0) outside the experiment, \(misses) cache misses "
                + "(miss rate \(String(format: "%.1f", rate * 100)) %, alert above 5 %), \(pushed["malformed"] ?? 0) malformed rows"
        )
        if let message = try await lastMessage(pushTopic) {
            print("push:         a push: \(message)")
        }

        // The same hour again (an operator's re-run, or a replay): nobody gets a second push.
        let beforeAgain = try await highWatermarks(pushTopic).values.reduce(0, +)
        _ = try await trigger(port: ports[0], token: token, job: BookRecJobs.pushJob, period: slot)
        let again = try await watch(
            job: BookRecJobs.pushJob, period: slot, cache: cache, simulator: simulator, started: .now, quiet: true)
        let repeated = try await bookCache.counts(job: again.job, period: again.period, attempt: again.attempt)
        let producedAgain = try await highWatermarks(pushTopic).values.reduce(0, +) - beforeAgain
        print(
            "push:         \(slot) run again (attempt \(again.attempt)): \(repeated["already_sent"] ?? 0) users "
                + "already marked sent in push:sent:{uid}:\(slot), \(repeated["sent"] ?? 0) pushes produced, "
                + "\(producedAgain) new messages")
        guard producedAgain == 0 else { throw DemoFailure("the re-run of \(slot) produced pushes again") }
        try await showThisHour(cache: cache, calendar: calendar, besides: slot)
    }

    /// The job-run records, read as `prewarmctl status` reads them.
    private static func runs(_ cache: RedisConnection) -> JobRuns {
        JobRuns(
            redis: cache, settings: JobRunSettings(), owner: "prewarmctl-demo", logger: Logger(label: "demo"),
            alerts: nil)
    }

    /// The hour under way when the pods started: no pod was up at its :00, so the pods'
    /// catch-up check either sent it late (within the catch-up window) or skipped it with an
    /// alert: what a new deployment, or a fleet back from an outage, does.
    private func showThisHour(cache: RedisConnection, calendar: Calendar, besides shown: String) async throws {
        let (period, minute) = Self.hourUnderWay(calendar)
        let runs = Self.runs(cache)
        guard period != shown, let run = try await runs.progress(job: BookRecJobs.pushJob, period: period) else {
            return
        }
        let window = "\(BookRecOptions().catchUpWindow.components.seconds / 60) min"
        let late = "\(minute) min after its :00"
        if run.state == .skipped {
            print(
                "push:         \(period), the hour under way, had no pod at its :00; the pods found it \(late), past "
                    + "PREWARM_PUSH_CATCH_UP_WINDOW (\(window)): skipped and alerted (job-run-missed), never sent late")
        } else {
            let counts = try await BookRecCache(redis: cache).counts(
                job: run.job, period: run.period, attempt: run.attempt)
            print(
                "push:         \(period), the hour under way, had no pod at its :00; the pods found it \(late), within "
                    + "PREWARM_PUSH_CATCH_UP_WINDOW (\(window)), and sent it once, after the day's pre-warm (an hour waits "
                    + "for it while it runs): \(run.state.rawValue), \(counts["rows"] ?? 0) rows, \(counts["sent"] ?? 0) pushes, "
                    + "\(counts["misses"] ?? 0) cache misses (the demo's users are pushed at 20:00-23:00)")
        }
    }

    /// The hour under way as a push period, and its minute.
    private static func hourUnderWay(_ calendar: Calendar) -> (period: String, minute: Int) {
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: Date())
        return (String(format: "%04d%02d%02d%02d", parts.year!, parts.month!, parts.day!, parts.hour!), parts.minute!)
    }

    /// Shows the run's progress each second until it ends, with the calls in flight.
    private func watch(
        job: String, period: String, cache: RedisConnection, simulator: DownstreamSimulator,
        started: ContinuousClock.Instant, quiet: Bool = false
    ) async throws -> JobRunProgress {
        let runs = Self.runs(cache)
        let deadline = ContinuousClock.now + .seconds(300)
        var lastShown = ContinuousClock.now - .seconds(10)
        while ContinuousClock.now < deadline {
            if let run = try await runs.progress(job: job, period: period), run.startedAt != nil {
                // Ended, and its outcome settled by its finish step (the final retries).
                if run.isFinished, !run.owesFinishStep, run.attempt > 0 { return run }
                if !quiet, ContinuousClock.now - lastShown >= .seconds(1) {
                    let fleet = try await FleetStatus.read(
                        redis: cache, postgres: nil, runsSince: Date().addingTimeInterval(-600), alerts: 0)
                    print(
                        "status:       +\(format(.now - started))  "
                            + StatusView(status: fleet, timeZone: timeZone).line(run)
                            + "  calls in flight \(simulator.stats.total.inFlight)")
                    lastShown = .now
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw DemoFailure("the \(job) run \(period) did not finish in 300 s")
    }

    /// A run's duration as its record and `prewarmctl status` give it: from its start to its
    /// outcome settled.
    private func took(_ run: JobRunProgress) -> String {
        String(format: "%.2f s", run.durationSeconds ?? 0)
    }

    /// The newest message of the topic, as text.
    private func lastMessage(_ topic: String) async throws -> String? {
        let marks = try await highWatermarks(topic)
        guard let (partition, end) = marks.first(where: { $0.value > 0 }) else { return nil }
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: "prewarmctl-demo-\(UUID().uuidString)", bootstrapServers: kafka.bootstrapServers,
                properties: kafka.properties))
        defer { Task { await consumer.close() } }
        try await consumer.assign([partition: end - 1])
        for _ in 0..<50 {
            if let message = try await consumer.poll(maxMessages: 1, timeoutMilliseconds: 100).messages.first {
                return String(decoding: message.value, as: UTF8.self)
            }
        }
        return nil
    }
}
