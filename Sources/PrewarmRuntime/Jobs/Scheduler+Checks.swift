import CoreMetrics
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// The scheduler's checks: take-overs of runs whose pod died, catch-ups of missed periods, deadlines.
extension Scheduler {

    /// Every `checkEvery`, from one `checkEvery` after start (a period missed while every
    /// pod was down is caught up then).
    func checkForever() async {
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
    func finishIfAbandoned(_ job: ScheduledJob, _ progress: JobRunProgress, now: Date) {
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
    func finishStep(job: String, period: String) async {
        do {
            try await runs.finishWhenFree(job: job, period: period)
        } catch is CancellationError {
        } catch {
            logger.warning(
                "a run's finish step failed; the next check tries again",
                metadata: ["job": "\(job)", "period": "\(period)", "error": "\(error)"])
        }
    }

    func catchUp(_ job: ScheduledJob, period: String, fire: Date, now: Date) async throws {
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
}
