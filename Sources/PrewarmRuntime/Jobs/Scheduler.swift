import CoreMetrics
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// What a trigger did.
public enum TriggerOutcome: Sendable, Equatable {
    /// The run started (or resumed a dead winner's run) in the background.
    case accepted(JobRunInfo)
    /// Another pod is working the run now.
    case inProgress(period: String)
    /// The period ran (or is waiting for its batches); force to run it again.
    case alreadyRan(period: String, state: String)
}

/// Fires jobs on their schedules and keeps their runs going. At a fire every pod races for
/// the run's lease; the winner works it, renewing the lease and recording progress. Every
/// `checkEvery`, each pod also takes over any run of its jobs whose winner died (its lease
/// expired, state still running) from its recorded progress, catches up a latest period
/// never run (once, per the job's policy), and alerts on a run past its deadline.
/// A manual trigger takes the same path and runs in the background.
public final class Scheduler: Service {
    public let jobs: [ScheduledJob]
    public let timeZone: TimeZone
    public let runs: JobRuns
    private let producer: KafkaProducer?
    private let alerts: Alerts
    private let logger: Logger
    private let retryAlertAfter: Duration
    private let metrics: SchedulerMetrics
    private let work: (stream: AsyncStream<Launch>, continuation: AsyncStream<Launch>.Continuation)

    /// What the run loop starts: a claimed run, or the finish step of a run whose pod ended
    /// without it.
    enum Launch: Sendable {
        case run(Started)
        case finishStep(job: String, period: String)
    }

    struct Started: Sendable {
        let job: ScheduledJob
        let lease: JobRunLease
        let info: JobRunInfo
        let progress: JobRunProgress?
    }

    public init(
        jobs: [ScheduledJob], timeZone: TimeZone, runs: JobRuns, producer: KafkaProducer?, alerts: Alerts,
        logger: Logger, metricsFactory: any MetricsFactory, retryAlertAfter: Duration = .seconds(300)
    ) {
        self.jobs = jobs
        self.timeZone = timeZone
        self.runs = runs
        self.producer = producer
        self.alerts = alerts
        self.logger = logger
        self.retryAlertAfter = retryAlertAfter
        self.metrics = SchedulerMetrics(factory: metricsFactory)
        let work = AsyncStream<Launch>.makeStream()
        self.work = work
        runs.launchFinishSteps { job, period in work.continuation.yield(.finishStep(job: job, period: period)) }
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            for job in jobs {
                group.addTask { await self.fireForever(job) }
            }
            group.addTask { await self.checkForever() }
            // Runs end with the group: on graceful shutdown they are cancelled, their leases
            // released, and another pod takes them over from their progress.
            group.addTask {
                await cancelWhenGracefulShutdown {
                    await withDiscardingTaskGroup { runs in
                        for await launch in self.work.stream {
                            runs.addTask {
                                switch launch {
                                case .run(let started): await self.execute(started)
                                case .finishStep(let job, let period):
                                    await self.finishStep(job: job, period: period)
                                }
                            }
                        }
                    }
                }
            }
            try? await gracefulShutdown()
            work.continuation.finish()
        }
    }

    // MARK: - Firing

    private func fireForever(_ job: ScheduledJob) async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let due = job.schedule.nextFire(after: Date(), in: timeZone)
            logger.debug("next run", metadata: ["job": "\(job.name)", "at": "\(due)"])
            do {
                try await cancelWhenGracefulShutdown { try await Self.sleep(until: due) }
            } catch {
                return
            }
            await fire(job, at: due)
        }
    }

    /// Sleeps in short steps so a wall-clock change (NTP, a VM resumed) is noticed.
    private static func sleep(until date: Date) async throws {
        while true {
            let remaining = date.timeIntervalSinceNow
            if remaining <= 0 { return }
            try await Task.sleep(for: .seconds(min(remaining, 30)))
        }
    }

    /// A scheduled fire: the period of `date`, raced for. A Redis error is retried with
    /// backoff (counted, and alerted once it has lasted) until the next fire is due; the
    /// check then catches the period up.
    @discardableResult
    func fire(_ job: ScheduledJob, at date: Date) async -> JobRuns.Claim? {
        let period = job.schedule.period(of: date, in: timeZone)
        let next = job.schedule.nextFire(after: date, in: timeZone)
        let firstFailure = ContinuousClock.now
        var alerted = false
        let policy = RetryPolicy(backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(10))) { _ in
            Date() < next
        }
        do {
            let claim = try await retrying(
                "claiming run \(job.name) \(period)", policy: policy, logger: logger,
                onRetry: { _, error in
                    self.metrics.fireError(job.name)
                    if !alerted, ContinuousClock.now - firstFailure > self.retryAlertAfter {
                        alerted = true
                        self.alerts.raise(
                            "job-fire-failing", "job \(job.name) cannot claim its run \(period): \(error)",
                            details: ["job": job.name, "period": period])
                    }
                }
            ) { try await self.claim(job, period: period, due: date, force: false) }
            start(job, claim, period: period, due: date, forced: false)
            return claim
        } catch {
            metrics.fireError(job.name)
            logger.error(
                "job fire failed; the next check catches the period up",
                metadata: ["job": "\(job.name)", "period": "\(period)", "error": "\(error)"])
            return nil
        }
    }

    /// `asked`: when the run was asked for, if later than it was due (a manual trigger): its
    /// deadline counts from then.
    private func claim(
        _ job: ScheduledJob, period: String, due: Date, force: Bool, skip: Bool = false, asked: Date? = nil
    ) async throws -> JobRuns.Claim {
        let from = max(due, asked ?? due)
        return try await runs.claim(
            job: job.name, period: period, due: due, force: force,
            deadline: job.deadline.map { from.addingTimeInterval($0.seconds) }, skip: skip)
    }

    /// Hands a claimed run to the run loop; logs what a claim that runs nothing found.
    private func start(_ job: ScheduledJob, _ claim: JobRuns.Claim, period: String, due: Date, forced: Bool) {
        switch claim {
        case .started(let lease):
            let info = JobRunInfo(job: job.name, period: period, attempt: lease.attempt, forced: forced, due: due)
            work.continuation.yield(.run(Started(job: job, lease: lease, info: info, progress: nil)))
        case .resumed(let lease, let progress, let previousOwner):
            let info = JobRunInfo(
                job: job.name, period: period, attempt: lease.attempt, forced: progress.forced,
                due: progress.dueAt ?? due)
            logger.notice(
                "taking over a job run whose winner stopped",
                metadata: [
                    "job": "\(job.name)", "period": "\(period)", "previous_owner": "\(previousOwner)",
                    "batches_produced": "\(progress.batchesProduced)",
                ])
            work.continuation.yield(.run(Started(job: job, lease: lease, info: info, progress: progress)))
        case .held, .exists, .skipped:
            logger.debug("job run not started here", metadata: ["job": "\(job.name)", "period": "\(period)"])
        }
    }

    /// Runs `job` now for `period` (default: the current one). Without `force` it honours
    /// the run's records like a scheduled fire; with it, it starts a new attempt even if the
    /// period ran. The run goes on in the background.
    public func trigger(job name: String, period: String? = nil, force: Bool = false) async throws -> TriggerOutcome {
        guard let job = jobs.first(where: { $0.name == name }) else {
            throw UnknownJob(name, known: jobs.map(\.name))
        }
        let period = period ?? job.schedule.period(of: Date(), in: timeZone)
        guard let due = job.schedule.fire(inPeriod: period, in: timeZone) else {
            throw AdminError(
                400,
                "'\(period)' is not a period of \(name) (\(job.schedule)): write "
                    + (job.schedule.isHourly ? "yyyyMMddHH" : "yyyyMMdd"))
        }
        let claim = try await claim(job, period: period, due: due, force: force, asked: Date())
        start(job, claim, period: period, due: due, forced: force)
        switch claim {
        case .started(let lease):
            return .accepted(JobRunInfo(job: name, period: period, attempt: lease.attempt, forced: force, due: due))
        case .resumed(let lease, let progress, _):
            return .accepted(
                JobRunInfo(job: name, period: period, attempt: lease.attempt, forced: progress.forced, due: due))
        case .held: return .inProgress(period: period)
        case .exists(let state): return .alreadyRan(period: period, state: state)
        case .skipped: return .alreadyRan(period: period, state: "skipped")
        }
    }

    // MARK: - Checks: take-overs, catch-ups, deadlines

    /// Every `checkEvery`, from one `checkEvery` after start (a period missed while every
    /// pod was down is caught up then).
    private func checkForever() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.runs.settings.checkEvery) }
            } catch {
                return
            }
            do {
                try await takeOver()
            } catch {
                logger.warning("looking for runs to take over failed", metadata: ["error": "\(error)"])
            }
            for job in jobs {
                do {
                    try await check(job, now: Date())
                } catch {
                    metrics.fireError(job.name)
                    logger.warning("job check failed", metadata: ["job": "\(job.name)", "error": "\(error)"])
                }
            }
        }
    }

    /// Takes over the runs of this worker's jobs that are under way but whose lease expired
    /// (their winner died), whatever their period: a scheduled fire's or a trigger's.
    func takeOver() async throws {
        for (name, period) in try await runs.active() {
            guard let job = jobs.first(where: { $0.name == name }) else { continue }
            guard let progress = try await runs.progress(job: name, period: period) else {
                try await runs.forgetActive(job: name, period: period)
                continue
            }
            guard progress.state == .running, !progress.leased else { continue }
            let due = progress.dueAt ?? job.schedule.fire(inPeriod: period, in: timeZone) ?? Date()
            start(
                job, try await claim(job, period: period, due: due, force: false), period: period, due: due,
                forced: false)
        }
    }

    /// One look at the job's latest two periods: catch-up, deadlines, and finish steps that
    /// never ended.
    func check(_ job: ScheduledJob, now: Date) async throws {
        let latest = job.schedule.latestFire(notAfter: now, in: timeZone)
        let before = job.schedule.latestFire(notAfter: latest.addingTimeInterval(-1), in: timeZone)
        for fire in [latest, before] {
            let period = job.schedule.period(of: fire, in: timeZone)
            guard let progress = try await runs.progress(job: job.name, period: period) else {
                if fire == latest { try await catchUp(job, period: period, fire: fire, now: now) }
                continue
            }
            if !progress.isFinished, let deadline = progress.deadlineAt, deadline < now,
                try await runs.claimLateAlert(job: job.name, period: period)
            {
                alerts.raise(
                    "job-deadline-missed",
                    "job \(job.name) \(period) is not done by its deadline \(RFC3339.display(deadline)) "
                        + "(state \(progress.state.rawValue), \(progress.batchesDone + progress.batchesFailed) of "
                        + "\(progress.batchesTotal ?? progress.batchesExpected ?? progress.batchesProduced) batches)",
                    details: ["job": job.name, "period": period])
            }
            finishIfAbandoned(job, progress, now: now)
        }
    }

    /// Launches the finish step of a run that ended without it: its pod died between
    /// recording the run's end and reporting the step (an in-place run, or a fan-out whose
    /// batches were all worked before it ended; a consumer's case comes back with its batch).
    /// Left to the pod that ended the run for two finish leases; the step's lease keeps two
    /// pods (or two checks of one) from running it at once. It runs beside the checks, with the runs (given up at
    /// shutdown, unreported: another pod runs it). Not for a run its winner failed (an error
    /// in its body or fan-out, alerted then): that run has no finish step, its hook would see
    /// part of it (`owesFinishStep`).
    private func finishIfAbandoned(_ job: ScheduledJob, _ progress: JobRunProgress, now: Date) {
        guard progress.owesFinishStep, let finished = progress.finishedAt,
            now.timeIntervalSince(finished) > (JobRuns.finishLease * 2).seconds
        else { return }
        logger.notice(
            "running the finish step of a run whose pod ended without it",
            metadata: ["job": "\(job.name)", "period": "\(progress.period)"])
        work.continuation.yield(.finishStep(job: job.name, period: progress.period))
    }

    /// A run's finish step, beside the checks and the runs (launched by a consumer that
    /// recorded a run's last batch, or by the check).
    private func finishStep(job: String, period: String) async {
        do {
            try await runs.finishWhenFree(job: job, period: period)
        } catch is CancellationError {
        } catch {
            logger.warning(
                "a run's finish step failed; the next check tries again",
                metadata: ["job": "\(job)", "period": "\(period)", "error": "\(error)"])
        }
    }

    private func catchUp(_ job: ScheduledJob, period: String, fire: Date, now: Date) async throws {
        // At a fire every pod claims at once; a period still unclaimed a minute later was missed.
        guard now.timeIntervalSince(fire) >= Self.missedAfter.seconds else { return }
        let late = Duration.seconds(now.timeIntervalSince(fire))
        switch job.catchUp {
        case .once:
            let claim = try await claim(job, period: period, due: fire, force: false)
            if case .started = claim {
                logger.notice(
                    "catching up a missed job run", metadata: ["job": "\(job.name)", "period": "\(period)"])
            }
            start(job, claim, period: period, due: fire, forced: false)
        case .within(let window) where late <= window:
            let claim = try await claim(job, period: period, due: fire, force: false)
            if case .started = claim {
                logger.notice(
                    "catching up a missed job run within its window",
                    metadata: ["job": "\(job.name)", "period": "\(period)", "late": "\(late)"])
            }
            start(job, claim, period: period, due: fire, forced: false)
        case .within(let window):
            if case .skipped = try await claim(job, period: period, due: fire, force: false, skip: true) {
                alerts.raise(
                    "job-run-missed",
                    "job \(job.name) missed its run \(period) (due \(RFC3339.display(fire))) and it is past its "
                        + "catch-up window of \(window): skipped",
                    details: ["job": job.name, "period": period])
            }
        case .skip:
            if case .skipped = try await claim(job, period: period, due: fire, force: false, skip: true) {
                logger.notice("missed job run skipped", metadata: ["job": "\(job.name)", "period": "\(period)"])
            }
        }
    }

    /// A period not claimed this long after its fire was missed (every pod was down).
    static let missedAfter = Duration.seconds(60)

    // MARK: - Running

    private func execute(_ started: Started) async {
        let job = started.job
        let lease = started.lease
        let info = started.info
        let clock = ContinuousClock.now
        logger.info(
            "job run starting",
            metadata: [
                "job": "\(job.name)", "period": "\(info.period)", "attempt": "\(info.attempt)",
                "forced": "\(info.forced)", "resumed": "\(started.progress != nil)",
            ])
        do {
            try await lease.lease.holding(logger: logger) {
                do {
                    try await self.wait(for: job, info)
                    switch job.work {
                    case .inPlace(let body):
                        try await body(info, lease)
                        try await lease.finish(.succeeded)
                        _ = try? await self.runs.finishWhenFree(job: job.name, period: info.period)
                    case .fanOut(let fanOut):
                        if try await self.fanOut(fanOut, info: info, lease: lease, resuming: started.progress) != nil {
                            _ = try? await self.runs.finishWhenFree(job: job.name, period: info.period)
                        }
                    }
                } catch let error where error is LeaseLost || error is CancellationError {
                    throw error
                } catch {
                    try? await lease.finish(.failed, error: "\(error)")
                    self.runs.countFailedByWinner(job.name)
                    self.alerts.raise(
                        "job-failed", "job \(job.name) \(info.period) failed: \(error)",
                        details: ["job": job.name, "period": info.period])
                    throw error
                }
            }
            logger.info(
                "job run's work finished here",
                metadata: [
                    "job": "\(job.name)", "period": "\(info.period)", "seconds": "\(ContinuousClock.now - clock)",
                ])
        } catch is CancellationError {
            logger.notice(
                "job run stopped by shutdown; another pod takes it over",
                metadata: ["job": "\(job.name)", "period": "\(info.period)"])
        } catch let lost as LeaseLost {
            if let current = try? await runs.progress(job: job.name, period: info.period),
                current.attempt > info.attempt
            {
                logger.notice(
                    "job run superseded by a newer attempt (forced); this attempt stops",
                    metadata: [
                        "job": "\(job.name)", "period": "\(info.period)", "attempt": "\(info.attempt)",
                        "newer_attempt": "\(current.attempt)",
                    ])
            } else {
                alerts.raise(
                    "job-lease-lost", "job \(job.name) \(info.period) lost its lease here: \(lost.reason)",
                    details: ["job": job.name, "period": info.period])
            }
        } catch {
            // Recorded failed and alerted above.
        }
    }

    /// Waits for the run the job comes after while it is under way, its finish step
    /// included (a pre-warm's final retry), at most `atMost` from this run's start (a pod
    /// taking the run over goes on from there); then goes on, alerted once. Not for a forced
    /// run (an operator's), nor after a forced run of the other (a re-run: what its earlier
    /// attempt left stands). A Redis error while waiting is retried, never the run's failure.
    private func wait(for job: ScheduledJob, _ info: JobRunInfo) async throws {
        guard let after = job.after, !info.forced else { return }
        let period = after.period(info.period)
        let metadata: Logger.Metadata = [
            "job": "\(job.name)", "period": "\(info.period)", "after": "\(after.job)", "after_period": "\(period)",
        ]
        func patiently<T: Sendable>(_ read: () async throws -> T) async throws -> T {
            try await retrying(
                "reading the run \(job.name) \(info.period) comes after",
                policy: RetryPolicy(backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(5))),
                logger: logger,
                read)
        }
        let since = try await patiently { try await runs.progress(job: job.name, period: info.period)?.startedAt }
        var waited = false
        while let other = try await patiently({ try await runs.progress(job: after.job, period: period) }),
            !other.forced, !other.isFinished || other.owesFinishStep
        {
            if !waited {
                logger.notice("job run waiting for the run it comes after", metadata: metadata)
                waited = true
            }
            if Date().timeIntervalSince(since ?? Date()) >= after.atMost.seconds {
                if (try? await runs.claimAlert("after_alerted", job: job.name, period: info.period)) != false {
                    alerts.raise(
                        "job-started-before-dependency",
                        "job \(job.name) \(info.period) waited \(after.atMost) for \(after.job) \(period) "
                            + "(state \(other.state.rawValue)) and goes on without it",
                        details: ["job": job.name, "period": info.period, "after": after.job])
                }
                return
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        if waited { logger.notice("job run goes on: the run it comes after ended", metadata: metadata) }
    }

    /// Produces the run's batches from where its progress stands; returns the run's final
    /// state if every batch was already worked by the time the fan-out ended.
    private func fanOut(_ fanOut: FanOut, info: JobRunInfo, lease: JobRunLease, resuming progress: JobRunProgress?)
        async throws -> JobRunState?
    {
        guard let producer else { throw UsageError("job \(info.job) fans out but the worker has no producer") }
        var cursor = progress.flatMap { Int64($0.cursor) } ?? Int64.min
        var batch = progress?.batchesProduced ?? 0
        var items = progress?.itemsProduced ?? 0
        var expected = progress?.batchesExpected
        // Outages are waited out (the lease keeps renewing meanwhile); one that lasts alerts.
        var stalledSince: ContinuousClock.Instant?
        func patiently(_ what: String, _ body: () async throws -> Void) async throws {
            try await retrying(
                what, policy: RetryPolicy(backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(30))),
                logger: logger,
                onRetry: { _, error in
                    let since = stalledSince ?? .now
                    stalledSince = since
                    if ContinuousClock.now - since > retryAlertAfter {
                        stalledSince = .now
                        alerts.raise(
                            "job-fan-out-stalled", "job \(info.job) \(info.period) cannot go on: \(error)",
                            details: ["job": info.job, "period": info.period])
                    }
                }, body)
            stalledSince = nil
        }
        // Batch i goes to partition i mod the topic's partitions: every pod of the group gets
        // an even share (a key's hash would leave one pod a tenth more, and the run ends with
        // the last share).
        var partitions = 0
        try await patiently("preparing \(info.job) \(info.period)") {
            try await fanOut.prepare(info)
            partitions = try await producer.prepare(topics: [fanOut.topic])[fanOut.topic] ?? 0
        }
        var count = progress?.itemsExpected
        if progress == nil {
            try await patiently("counting \(info.job) targets") { count = try await fanOut.source.count(for: info) }
        }
        let plan = BatchPlan(items: count, batchSize: fanOut.batchSize, partitions: partitions)
        if progress == nil, let count {
            expected = plan.batches ?? (count + fanOut.batchSize - 1) / fanOut.batchSize
            try await lease.record([("items_expected", count), ("batches_expected", expected!)])
        }
        while true {
            var ids: [Int64] = []
            try await patiently("reading \(info.job) targets") {
                ids = try await fanOut.source.page(for: info, after: cursor, limit: plan.limit(batch: batch))
            }
            if ids.isEmpty { break }
            try lease.lease.ensureHeld()
            var message = try JobBatch(
                job: info.job, period: info.period, attempt: info.attempt, batch: batch, batchCount: expected, ids: ids
            ).message(topic: fanOut.topic)
            if partitions > 0 { message.partition = Int32(batch % partitions) }
            try await patiently("producing \(info.job) batch \(batch)") { try await producer.send(message) }
            batch += 1
            items += ids.count
            cursor = ids.last!
            try await lease.record([("cursor", cursor), ("batches_produced", batch), ("items_produced", items)])
            metrics.batchProduced(info.job)
        }
        logger.info(
            "job fan-out finished", metadata: ["job": "\(info.job)", "period": "\(info.period)", "batches": "\(batch)"])
        return try await lease.finishFanOut(batches: batch, items: items)
    }
}
