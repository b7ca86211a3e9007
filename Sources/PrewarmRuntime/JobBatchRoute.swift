import Kafka
import PrewarmConfiguration

/// What a product does with one batch of a job run (score 200 users, pre-warm a page of
/// readers). It must be idempotent: a batch is retried after an outage and replayed after a
/// crash or an offset reset.
public protocol JobBatchHandler: Sendable {
    /// Works the batch; items that failed on their own are counted in the result (and in the
    /// run's progress). Throw a transient error for an outage (the batch is retried), any
    /// other error when the batch itself cannot be worked (it is recorded failed and
    /// dead-lettered).
    func work(_ batch: JobBatch) async throws -> BatchResult
}

public struct BatchResult: Sendable, Equatable {
    public var itemsDone: Int
    public var itemsFailed: Int

    public init(itemsDone: Int, itemsFailed: Int = 0) {
        self.itemsDone = itemsDone
        self.itemsFailed = itemsFailed
    }
}

/// The consumer side of a fan-out: decodes `JobBatch` messages, skips batches the run has
/// already recorded (a replay), hands the rest to the product's handler, up to `concurrency`
/// at once, and records each in the run's progress, so the run knows when its last batch is
/// done.
struct JobBatchTopicHandler<Handler: JobBatchHandler>: TopicHandler {
    let runs: JobRuns
    let handler: Handler
    let concurrency: Int

    func decode(_ message: KafkaMessage) throws -> JobBatch {
        try JobBatch.decode(message)
    }

    private enum Outcome: Sendable {
        case done
        case transient(any Error)
        case invalid(InvalidMessage)
    }

    func handle(_ batch: [Decoded<JobBatch>]) async throws {
        let outcomes = try await concurrentMap(batch.map(\.value), limit: concurrency) { job in
            try await work(job)
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
            if try await runs.isRecorded(batch) {
                // The batch that ended the run comes again when its pod died before its
                // offset was committed: perhaps before or in the run's finish step.
                try await runs.finishIfPending(batch)
                return .done
            }
            let result = try await handler.work(batch)
            try await record(batch, itemsDone: result.itemsDone, itemsFailed: result.itemsFailed, failed: false)
            return .done
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

    private func record(_ batch: JobBatch, itemsDone: Int, itemsFailed: Int, failed: Bool) async throws {
        let record = try await runs.recordBatch(batch, itemsDone: itemsDone, itemsFailed: itemsFailed, failed: failed)
        if case .recorded(let finished?) = record {
            try await runs.finishStep(job: batch.job, period: batch.period, state: finished)
        }
    }
}

extension TopicRoute {
    /// The route of a batch topic: every message is a `JobBatch` worked by `handler`, up to
    /// `concurrency` batches at once, and recorded in its run's progress.
    public init(
        batchesOf spec: TopicSpec, runs: JobRuns, concurrency: Int = 1, handler: some JobBatchHandler
    ) {
        self.init(spec, handler: JobBatchTopicHandler(runs: runs, handler: handler, concurrency: concurrency))
    }

    /// `init(batchesOf:...)` for a topic outside the catalog (its dead letters go to
    /// `<topic>.dlq`).
    public init(batchesOfTopic topic: String, runs: JobRuns, concurrency: Int = 1, handler: some JobBatchHandler) {
        self.init(topic: topic, handler: JobBatchTopicHandler(runs: runs, handler: handler, concurrency: concurrency))
    }
}
