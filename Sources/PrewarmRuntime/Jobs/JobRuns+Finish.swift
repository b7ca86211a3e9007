import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// A run's end: its finish hooks, run once by whichever pod recorded the end, and its report.
extension JobRuns {

    /// Takes the jobs' declared finish steps (`ScheduledJob.onFinished`): the scheduler does
    /// this for the jobs it runs; a worker declares, never registers.
    public func declare(_ jobs: [ScheduledJob]) {
        finishHooks.withLock { hooks in
            for job in jobs { hooks[job.name] = job.onFinished }
        }
    }

    /// A Lua function for a finish hook's script: `recover(progressKey, count)` moves `count`
    /// of the run's failed items to done, in the same script as the hook's own record of them,
    /// so a crash leaves its items either still failed or recovered and counted. A run whose
    /// record is gone is left alone.
    public static let recover = """
        local function recover(progress, count)
          if count == 0 or redis.call('EXISTS', progress) == 0 then return end
          redis.call('HINCRBY', progress, 'items_failed', -count)
          redis.call('HINCRBY', progress, 'items_done', count)
        end
        """

    /// Where finish steps run from now on (the scheduler's run group).
    func launchFinishSteps(with launch: @escaping @Sendable (_ job: String, _ period: String) -> Void) {
        launcher.withLock { $0 = launch }
    }

    /// The lease on a run's finish step: short, renewed while the step runs, so that when
    /// its pod dies another can run the step soon after.
    static let finishLease = Duration.seconds(10)

    /// A consumer recorded a run's last batch, or found a recorded batch of a run whose step
    /// never ended (the pod that recorded the run's end died before or in its step, so that
    /// batch came again): the step is launched beside the consumers when a scheduler runs
    /// here, else run now.
    func finishRun(job: String, period: String) async throws {
        if let launch = launcher.withLock({ $0 }) {
            launch(job, period)
        } else {
            try await finishWhenFree(job: job, period: period)
        }
    }

    /// Runs the finish step of an ended run that owes it: waits out the lease of a pod that is
    /// running the step or died in it (two finish leases at most), then runs it, unless that
    /// pod ended it meanwhile. Returns whether the step ran here.
    @discardableResult
    func finishWhenFree(job: String, period: String) async throws -> Bool {
        let waitUntil = ContinuousClock.now + Self.finishLease * 2
        while true {
            guard let progress = try await progress(job: job, period: period), progress.owesFinishStep else {
                return false
            }
            if try await finishStep(job: job, period: period) { return true }
            guard ContinuousClock.now < waitUntil else {
                logger.warning(
                    "a run's finish step is held by another pod; leaving it to that pod",
                    metadata: ["job": "\(job)", "period": "\(period)"])
                return false
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// The batch was recorded before: if its run ended and still owes its finish step, run it.
    func finishIfPending(_ batch: JobBatch) async throws {
        guard let progress = try await progress(job: batch.job, period: batch.period),
            progress.attempt == batch.attempt, progress.owesFinishStep
        else { return }
        try await finishRun(job: batch.job, period: batch.period)
    }

    /// A run's finish step, by whoever recorded its end: under its lease, the job's hook, then
    /// the run's outcome settled from its counts (`partial` or `failed` with what failed;
    /// a hook that recovered items may make it `succeeded`), `finish_reported`, the log line,
    /// alerts and metrics. False when another pod holds the lease. An error (Redis
    /// unreachable, the lease lost) is thrown: the step is run again later (a replayed
    /// batch, or the periodic check).
    @discardableResult
    func finishStep(job: String, period: String) async throws -> Bool {
        guard
            let lease = try await RedisLease.acquire(
                Self.finishKey(job: job, period: period), ttl: Self.finishLease, on: redis, owner: owner)
        else { return false }
        try await lease.holding(logger: logger) {
            try await self.runFinishStep(job: job, period: period)
        }
        return true
    }

    /// The step itself (skipped if another pod ended it meanwhile): the hook, tried again
    /// with backoff a few times and then alerted; the outcome settled; the log line; alerts if
    /// the run ended partial, failed or past its deadline.
    func runFinishStep(job: String, period: String) async throws {
        guard let progress = try await progress(job: job, period: period), progress.owesFinishStep else { return }
        if let hook = finishHooks.withLock({ $0[job] }) {
            do {
                try await retrying(
                    "finishing \(job) \(period)",
                    policy: RetryPolicy(
                        backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(5)), maxAttempts: 6),
                    logger: logger
                ) { try await hook(progress) }
            } catch let error where error is CancellationError || Task.isCancelled {
                throw error  // a pod shutting down: the step is not reported, another runs it
            } catch {
                alerts?.raise(
                    "job-finish-failed", "job \(job) \(period) ended but its last step failed: \(error)",
                    details: ["job": job, "period": period])
            }
        }
        let settled = try await redis.run(
            JobRunScripts.settle,
            keys: [Self.progressKey(job: job, period: period), Self.doneKey(job: job, period: period)],
            arguments: [progress.attempt, Self.nowMilliseconds, settings.retention.milliseconds])
        guard let text = settled.string, !text.isEmpty, let ended = try await self.progress(job: job, period: period)
        else { return }  // a newer attempt began meanwhile: its own step reports it
        _ = try JobRunState(recorded: text)
        report(ended)
    }

    /// The log line, alerts and metrics of a run whose outcome is settled.
    func report(_ run: JobRunProgress) {
        let job = run.job
        let period = run.period
        logger.notice(
            "job run finished",
            metadata: [
                "job": "\(job)", "period": "\(period)", "state": "\(run.state.rawValue)",
                "seconds": "\(run.durationSeconds ?? 0)", "items_done": "\(run.itemsDone)",
                "items_failed": "\(run.itemsFailed)", "batches_failed": "\(run.batchesFailed)",
            ])
        metrics.ended(job, run.state, seconds: run.durationSeconds)
        let failures =
            "\(run.itemsFailed) of \(run.itemsDone + run.itemsFailed) items failed"
            + (run.batchesFailed > 0 ? ", \(run.batchesFailed) batches set aside" : "")
        switch run.state {
        case .partial:
            alerts?.raise(
                "job-partial", "job \(job) \(period) ended partial: \(failures)",
                details: ["job": job, "period": period, "items_failed": String(run.itemsFailed)])
        case .failed where (run.error ?? "").isEmpty:
            alerts?.raise(
                "job-failed", "job \(job) \(period) failed: \(failures)",
                details: ["job": job, "period": period, "items_failed": String(run.itemsFailed)])
        default: break
        }
        if let deadline = run.deadlineAt, let finished = run.finishedAt, finished > deadline {
            alerts?.raise(
                "job-late",
                "job \(job) \(period) finished at \(RFC3339.display(finished)), past its deadline "
                    + "\(RFC3339.display(deadline))",
                details: ["job": job, "period": period])
        }
    }

    /// A run its winner failed (its body or fan-out threw): counted with the runs' outcomes.
    func countFailedByWinner(_ job: String) {
        metrics.ended(job, .failed, seconds: nil)
    }

    /// Marks that the run's deadline alert was raised; true for the one caller that did.
    func claimLateAlert(job: String, period: String) async throws -> Bool {
        try await claimAlert("late_alerted", job: job, period: period)
    }

    /// Marks that the run's alert `field` was raised; true for the one caller that did.
    func claimAlert(_ field: String, job: String, period: String) async throws -> Bool {
        try await redis.send("HSETNX", Self.progressKey(job: job, period: period), field, 1) == .integer(1)
    }
}
