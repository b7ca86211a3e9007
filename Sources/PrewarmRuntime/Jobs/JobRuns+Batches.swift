import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// A consumer's batch: begun under a batch lease (or skipped: stale, recorded, crashed), ended.
extension JobRuns {

    /// What a consumer may do with a batch it was handed.
    public enum BatchStart: Sendable {
        /// Work it, under this lease (held while it is worked and recorded).
        case work(RedisLease)
        /// No record of its run (expired, or a batch made outside a run): work it unfenced;
        /// its record is refused.
        case orphan
        /// Of an older attempt than the run's: a forced re-run fenced it; skip it.
        case stale(current: Int)
        /// Already recorded for its attempt: a replay.
        case recorded
        /// Begun this many times by consumers that never came back: set it aside.
        case crashed(starts: Int)
    }

    /// Before a consumer works a batch: see `BatchStart`. A batch another live consumer is
    /// working now (delivered twice around a rebalance) is waited for, never worked beside it.
    func beginBatch(_ batch: JobBatch) async throws -> BatchStart {
        let token = "\(owner):\(UUID().uuidString)"
        let key = Self.batchLeaseKey(job: batch.job, period: batch.period, attempt: batch.attempt, batch: batch.batch)
        var waited = false
        while true {
            let asked = ContinuousClock.now
            let reply = try await redis.run(
                JobRunScripts.beginBatch,
                keys: [
                    Self.progressKey(job: batch.job, period: batch.period), key,
                    Self.startsKey(job: batch.job, period: batch.period, attempt: batch.attempt),
                    Self.batchesKey(job: batch.job, period: batch.period, attempt: batch.attempt),
                ],
                arguments: [
                    batch.attempt, batch.batch, token, settings.lease.milliseconds, settings.maxBatchCrashes,
                    settings.retention.milliseconds,
                ])
            let answer = try JobRunReply<BeginBatchWord>(reply, of: JobRunScripts.beginBatch)
            switch answer.word {
            case .begin:
                return .work(RedisLease.adopt(key, token: token, ttl: settings.lease, on: redis, asked: asked))
            case .orphan: return .orphan
            case .stale: return .stale(current: try answer.number(JobRunScripts.beginBatch))
            case .recorded: return .recorded
            case .crashed: return .crashed(starts: try answer.number(JobRunScripts.beginBatch))
            case .busy:
                if !waited {
                    logger.notice(
                        "batch is being worked by another consumer; waiting for it",
                        metadata: ["job": "\(batch.job)", "period": "\(batch.period)", "batch": "\(batch.batch)"])
                    waited = true
                }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// The consumer came back from a batch it began (whatever the outcome): it is no longer
    /// counted among the starts that never returned. Runs even when the caller is cancelled
    /// (a shutdown gives the batch back: that is no crash).
    func endBatch(_ batch: JobBatch) async {
        let key = Self.startsKey(job: batch.job, period: batch.period, attempt: batch.attempt)
        let redis = redis
        let logger = logger
        await Task {
            do {
                try await retrying(
                    "ending batch \(batch.key)",
                    policy: RetryPolicy(
                        backoff: Backoff(initial: .milliseconds(100), maximum: .seconds(2)), maxAttempts: 5),
                    logger: logger
                ) { _ = try await redis.run(JobRunScripts.endBatch, keys: [key], arguments: [batch.batch]) }
            } catch {
                logger.warning(
                    "a batch's end could not be recorded; it counts as a start that never returned",
                    metadata: ["batch": "\(batch.key)", "error": "\(error)"])
            }
        }.value
    }

    /// Of `batches`, those a consumer began before and never came back from (its pod died in
    /// them): suspects, to be worked alone.
    func crashedBefore(_ batches: [JobBatch]) async throws -> [Bool] {
        guard !batches.isEmpty else { return [] }
        let replies = try await redis.pipeline(
            batches.map {
                RedisCommand(
                    "HGET", Self.startsKey(job: $0.job, period: $0.period, attempt: $0.attempt), $0.batch)
            })
        return replies.map { ($0.string.flatMap { Int($0) } ?? 0) > 0 }
    }
}
