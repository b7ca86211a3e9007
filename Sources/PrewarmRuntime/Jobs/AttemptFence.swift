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
/// (see `FenceScript.lua`).
public struct AttemptFence: WriteFence, Equatable {
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

    /// How long a fence's copy in a cluster slot lives: past any run's retention.
    public static let copyLifetime = Duration.seconds(2 * 86_400)

    /// The key and argument of `FenceScript.lua`'s `fenced(key, fence)` in a script over keys
    /// of `key`'s slot: the run's record and the attempt on one server; on a cluster, the
    /// fence's copy in that slot (`prewarm:fence:<job>:<period>{<the slot's tag>}`) and `copy:{attempt}:{ms}`.
    public func guarding(_ key: String, on redis: any RedisClient) -> (key: String, argument: String) {
        guard redis.splitsKeysBySlot else { return (progressKey, String(attempt)) }
        return (
            FenceScript.copyKey("prewarm:fence:\(job):\(period)", slotOf: key),
            FenceScript.copyArgument(attempt, lifetime: Self.copyLifetime.milliseconds)
        )
    }

    /// On a cluster, before a batch's fenced writes: throws `StaleAttempt` when the run's
    /// record names a newer attempt (the copies in the slots learn of it only when the newer
    /// attempt writes there). Nothing to do on one server, where the writes read the record.
    public func check(on redis: any RedisClient) async throws {
        guard redis.splitsKeysBySlot else { return }
        let current = try await redis.send("HGET", progressKey, "attempt").string.flatMap { Int($0) }
        if let current, current != attempt { throw refused }
    }
    /// What a write this fence refused throws.
    public var refused: StaleAttempt { StaleAttempt(job: job, period: period, attempt: attempt) }
    public var refusal: any Error { refused }
}
