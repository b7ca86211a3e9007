import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// A batch of an older attempt of its run wrote nothing: a forced re-run superseded it (its
/// fenced write was refused). The consumer skips the batch; the newer attempt covers it.
public struct StaleAttempt: Error, CustomStringConvertible {
    public let job: String
    public let period: String
    public let attempt: Int

    public init(job: String, period: String, attempt: Int) {
        self.job = job
        self.period = period
        self.attempt = attempt
    }

    public init(_ batch: JobBatch) {
        self.init(job: batch.job, period: batch.period, attempt: batch.attempt)
    }

    public var description: String { "attempt \(attempt) of \(job) \(period) was superseded by a newer attempt" }
}

/// What a product's fenced write checks: the run's record still names the batch's attempt
/// (see `JobRuns.fence`).
public struct AttemptFence: Sendable, Equatable {
    public let job: String
    public let period: String
    public let attempt: Int

    public init(_ batch: JobBatch) {
        self.init(job: batch.job, period: batch.period, attempt: batch.attempt)
    }

    public init(job: String, period: String, attempt: Int) {
        self.job = job
        self.period = period
        self.attempt = attempt
    }

    public var progressKey: String { JobRuns.progressKey(job: job, period: period) }
    /// What a write this fence refused throws.
    public var refused: StaleAttempt { StaleAttempt(job: job, period: period, attempt: attempt) }
}
