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
    let producer: KafkaProducer?
    let alerts: Alerts
    let logger: Logger
    let retryAlertAfter: Duration
    let metrics: SchedulerMetrics
    let work: (stream: AsyncStream<Launch>, continuation: AsyncStream<Launch>.Continuation)

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
        runs.declare(jobs)
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

    func fireForever(_ job: ScheduledJob) async {
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
    static func sleep(until date: Date) async throws {
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
    func claim(
        _ job: ScheduledJob, period: String, due: Date, force: Bool, skip: Bool = false, asked: Date? = nil
    ) async throws -> JobRuns.Claim {
        let from = max(due, asked ?? due)
        return try await runs.claim(
            job: job.name, period: period, due: due, force: force,
            deadline: job.deadline.map { from.addingTimeInterval($0.seconds) }, skip: skip)
    }

    /// Hands a claimed run to the run loop; logs what a claim that runs nothing found.
    func start(_ job: ScheduledJob, _ claim: JobRuns.Claim, period: String, due: Date, forced: Bool) {
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
        case .skipped: return .alreadyRan(period: period, state: JobRunState.skipped.rawValue)
        }
    }

}
