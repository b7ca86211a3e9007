import CoreMetrics
import Foundation
import Kafka
import Logging
import Postgres
import ServiceLifecycle

/// A claimed run worked: the winner's body, its fan-out into batches, the wait for them.
extension Scheduler {

    func execute(_ started: Started) async {
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
    func wait(for job: ScheduledJob, _ info: JobRunInfo) async throws {
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
    func fanOut(_ fanOut: FanOut, info: JobRunInfo, lease: JobRunLease, resuming progress: JobRunProgress?)
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
