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

/// A handler that is a closure: a product whose jobs share one object declares each job's
/// batches as one of its methods (`BatchWork { try await jobs.push($0) }`).
public struct BatchWork: JobBatchHandler {
    private let body: @Sendable (JobBatch) async throws -> BatchResult

    public init(_ body: @escaping @Sendable (JobBatch) async throws -> BatchResult) {
        self.body = body
    }

    public func work(_ batch: JobBatch) async throws -> BatchResult { try await body(batch) }
}

public struct BatchResult: Sendable, Equatable {
    public var itemsDone: Int
    public var itemsFailed: Int

    public init(itemsDone: Int, itemsFailed: Int = 0) {
        self.itemsDone = itemsDone
        self.itemsFailed = itemsFailed
    }
}
