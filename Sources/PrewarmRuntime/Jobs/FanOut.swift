import Foundation
import Kafka

/// Where a fan-out job's targets come from: ids in ascending order, read a page at a time
/// after a cursor, so that a run taken over by another pod goes on where the first stopped.
public protocol FanOutSource: Sendable {
    /// How many targets the run will have, if cheap to know (for progress and ETA).
    func count(for run: JobRunInfo) async throws -> Int?
    /// Up to `limit` ids greater than `cursor`, ascending.
    func page(for run: JobRunInfo, after cursor: Int64, limit: Int) async throws -> [Int64]
}

/// What a fan-out job produces and from where.
public struct FanOut: Sendable {
    public let topic: String
    public let batchSize: Int
    public let source: any FanOutSource
    /// Runs before the first batch is produced, by the winner and again by a pod taking the
    /// run over (so it must be idempotent): what the run's consumers will need (a snapshot
    /// of the targets, reference data in the cache).
    public let prepare: @Sendable (JobRunInfo) async throws -> Void
    /// What every pod of the group does with a batch of this job.
    public let handler: any JobBatchHandler
    /// Batches of this job worked at once per pod.
    public let concurrency: Int

    public init(
        topic: String, batchSize: Int, source: any FanOutSource,
        prepare: @escaping @Sendable (JobRunInfo) async throws -> Void = { _ in }, concurrency: Int = 1,
        handler: any JobBatchHandler
    ) {
        self.topic = topic
        self.batchSize = max(batchSize, 1)
        self.source = source
        self.prepare = prepare
        self.concurrency = max(concurrency, 1)
        self.handler = handler
    }
}
