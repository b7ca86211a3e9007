import Kafka
import PrewarmConfiguration

/// The consumer side of a fan-out: decodes `JobBatch` messages, hands each to the product's
/// handler, up to `concurrency` at once, and records each in the run's progress, so the run
/// knows when its last batch is done. Before working a batch it takes the batch's lease
/// (`JobRuns.beginBatch`), which decides:
/// - a batch already recorded (a replay) is skipped, and its run's finish step run if it
///   never ended;
/// - a batch of an older attempt (a forced re-run superseded it) is skipped;
/// - a batch another live consumer is working is waited for, never worked beside it;
/// - a batch begun `maxBatchCrashes` times by consumers whose pods died in it is set aside:
///   recorded failed, dead-lettered and alerted, and the run goes on without it. Batches
///   that a consumer began before and never came back from are worked alone, after the
///   others, so that one that kills its pod takes no other batch with it.
struct JobBatchTopicHandler: TopicHandler {
    let runs: JobRuns
    /// Each job's handler, by job name.
    let handlers: [String: any JobBatchHandler]
    let concurrency: Int

    /// The handler of the batch's job; a job no declaration names is bad input.
    private func handler(of batch: JobBatch) throws -> any JobBatchHandler {
        guard let handler = handlers[batch.job] else {
            throw InvalidMessage(
                "no job '\(batch.job)' is declared on this topic (declared: \(handlers.keys.sorted()))",
                errorClass: "UnknownJob")
        }
        return handler
    }

    func decode(_ message: KafkaMessage) throws -> JobBatch {
        try JobBatch.decode(message)
    }

    private enum Outcome: Sendable {
        case done
        case transient(any Error)
        case invalid(InvalidMessage)
    }

    func handle(_ batch: [Decoded<JobBatch>]) async throws {
        let jobs = batch.map(\.value)
        let suspects = try await runs.crashedBefore(jobs)
        var outcomes = [Outcome?](repeating: nil, count: jobs.count)
        let calm = jobs.indices.filter { !suspects[$0] }
        for (index, outcome) in zip(
            calm, try await concurrentMap(calm.map { jobs[$0] }, limit: concurrency) { try await work($0) })
        {
            outcomes[index] = outcome
        }
        for index in jobs.indices where suspects[index] {
            outcomes[index] = try await work(jobs[index])
        }
        if let transient = outcomes.lazy.compactMap({ if case .transient(let error) = $0 { error } else { nil } })
            .first
        {
            throw transient  // the batches recorded meanwhile are skipped when it comes back
        }
        var invalid: [Int: InvalidMessage] = [:]
        for (index, outcome) in outcomes.enumerated() {
            if case .invalid(let reason) = outcome { invalid[index] = reason }
        }
        if !invalid.isEmpty { throw InvalidItems(invalid) }
    }

    private func work(_ batch: JobBatch) async throws -> Outcome {
        do {
            switch try await runs.beginBatch(batch) {
            case .recorded:
                // The batch that ended the run comes again when its pod died before its
                // offset was committed: perhaps before or in the run's finish step.
                try await runs.finishIfPending(batch)
                return .done
            case .stale(let current):
                runs.logger.info(
                    "batch of a superseded attempt skipped",
                    metadata: [
                        "job": "\(batch.job)", "period": "\(batch.period)", "batch": "\(batch.batch)",
                        "attempt": "\(batch.attempt)", "current_attempt": "\(current)",
                    ])
                return .done
            case .crashed(let starts):
                return try await setAside(batch, starts: starts)
            case .orphan:
                let result = try await handler(of: batch).work(batch)
                try await record(batch, itemsDone: result.itemsDone, itemsFailed: result.itemsFailed, failed: false)
                return .done
            case .work(let lease):
                do {
                    try await lease.holding(logger: runs.logger) {
                        let result = try await handler(of: batch).work(batch)
                        try lease.ensureHeld()
                        try await record(
                            batch, itemsDone: result.itemsDone, itemsFailed: result.itemsFailed, failed: false)
                    }
                } catch {
                    await runs.endBatch(batch)
                    throw error
                }
                await runs.endBatch(batch)
                return .done
            }
        } catch is StaleAttempt {
            return .done  // a newer attempt began while this one worked: it covers the batch
        } catch let error where Failure.kind(of: error) == .transient {
            return .transient(error)
        } catch {
            do {
                try await record(batch, itemsDone: 0, itemsFailed: batch.ids.count, failed: true)
            } catch {
                return .transient(error)
            }
            return .invalid(
                error as? InvalidMessage ?? InvalidMessage("\(error)", errorClass: Failure.errorClass(of: error)))
        }
    }

    /// A batch that pod after pod died working: recorded failed (its items counted failed),
    /// dead-lettered with the reason, alerted; the run goes on with the rest.
    private func setAside(_ batch: JobBatch, starts: Int) async throws -> Outcome {
        let reason =
            "batch \(batch.batch) of \(batch.job) \(batch.period) was begun \(starts) times by consumers that never "
            + "came back (their pods died working it): set aside"
        try await record(batch, itemsDone: 0, itemsFailed: batch.ids.count, failed: true)
        runs.alerts?.raise(
            "job-batch-set-aside", reason + " with its \(batch.ids.count) items",
            details: [
                "job": batch.job, "period": batch.period, "batch": String(batch.batch),
                "items": String(batch.ids.count),
            ])
        return .invalid(InvalidMessage(reason, errorClass: "BatchKilledConsumers"))
    }

    private func record(_ batch: JobBatch, itemsDone: Int, itemsFailed: Int, failed: Bool) async throws {
        let record = try await runs.recordBatch(batch, itemsDone: itemsDone, itemsFailed: itemsFailed, failed: failed)
        if case .recorded(let finished?) = record, finished.isFinished {
            try await runs.finishRun(job: batch.job, period: batch.period)
        }
    }
}
