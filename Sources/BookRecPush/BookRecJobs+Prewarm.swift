import CoreMetrics
import Foundation
import Kafka
import Logging
import NIOPosix
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import Synchronization

/// `book-rec-prewarm`: the day's readers' recommendations cached; the finish step's final retry of the failed.
extension BookRecJobs {

    enum PrewarmOutcome: Sendable {
        case cached(CachedRecommendation)
        case notInExperiment
    }

    /// One user: the A/B service, then the recommendation engine.
    func prewarm(_ row: TaskDataRow) async throws -> PrewarmOutcome {
        let assignment = try await services.assignment(user: row.user, project: row.project)
        guard assignment.isIn else { return .notInExperiment }
        let rec = try await services.recommend(user: row.user, project: row.project, traceID: assignment.traceID)
        return .cached(
            CachedRecommendation(
                recID: rec.recID, recType: rec.recType, materialID: rec.materialID, traceID: assignment.traceID))
    }

    /// The users' pre-warm: written to the cache in one script (fenced: nothing once a newer
    /// attempt of the run began); the users that failed are returned with their errors.
    /// `malformed` counts rows (a user with a good and a bad row is pre-warmed, and its bad
    /// row counted).
    func prewarm(users: [Int64], day: String, fence: AttemptFence) async throws -> (
        counts: [String: Int], failed: [(user: Int64, error: any Error)]
    ) {
        let (rows, malformed) = try await data.users(users, day: day)
        for problem in malformed {
            logger.warning("task_data row skipped", metadata: ["row": "\(problem.id)", "reason": "\(problem.reason)"])
        }
        let outcomes = try Self.unlessCancelled(
            await concurrentResults(rows, limit: max(rows.count, 1)) { row in try await self.prewarm(row) })
        var entries: [(user: Int64, value: CachedRecommendation)] = []
        var failed: [(user: Int64, error: any Error)] = []
        var out: [Int64] = []
        for (row, outcome) in zip(rows, outcomes) {
            switch outcome {
            case .success(.cached(let value)): entries.append((row.user, value))
            case .success(.notInExperiment): out.append(row.user)
            case .failure(let error): failed.append((row.user, error))
            }
        }
        try await cache.write(entries, ttl: options.cacheTTL, fence: fence)
        try await cache.recordOut(out, day: day)
        return (["cached": entries.count, "not_in_experiment": out.count, "malformed": malformed.count], failed)
    }

    func prewarm(_ batch: JobBatch) async throws -> BatchResult {
        let (counts, failed) = try await prewarm(
            users: batch.ids, day: String(batch.period.prefix(8)), fence: AttemptFence(batch))
        var all = counts
        all["failed"] = failed.count
        // The failed users join the run's failed set with the counts, in one step: a batch
        // worked again adds neither (its first working's failures are the ones counted).
        try await count(all, failed: failed.map(\.user), batch)
        warn("users not pre-warmed; tried again at the run's end", failed, ["batch": "\(batch.batch)"])
        return BatchResult(itemsDone: batch.ids.count - failed.count, itemsFailed: failed.count)
    }

    /// At the run's end (by the pod that recorded its last batch): the failed users once
    /// more; those still failing are reported, and the run alerts above the failure ratio.
    public func finishPrewarm(_ run: JobRunProgress) async throws {
        let failed = try await cache.failed(period: run.period, attempt: run.attempt)
        var still: [(user: Int64, error: any Error)] = []
        if !failed.isEmpty {
            let (counts, again) = try await prewarm(
                users: failed, day: String(run.period.prefix(8)),
                fence: AttemptFence(job: run.job, period: run.period, attempt: run.attempt))
            still = again
            let recovered = Set(failed).subtracting(again.map(\.user))
            let moved = [
                "cached": counts["cached"] ?? 0, "not_in_experiment": counts["not_in_experiment"] ?? 0,
                "failed": -recovered.count,
            ]
            try await cache.settle(
                Array(recovered), counts: moved, job: run.job, period: run.period, attempt: run.attempt)
            increment(moved, run.job)
        }
        let counts = try await cache.counts(job: run.job, period: run.period, attempt: run.attempt)
        let users = counts.values.reduce(0, +)
        for chunk in stride(from: 0, to: min(still.count, 1000), by: 100) {
            let slice = still[chunk..<min(chunk + 100, still.count)]
            logger.error(
                "users left without a pre-warmed recommendation",
                metadata: [
                    "period": "\(run.period)", "users": "\(slice.map(\.user))", "error": "\(slice.first!.error)",
                ])
        }
        logger.notice(
            "book-rec pre-warm finished",
            metadata: [
                "period": "\(run.period)", "users": "\(users)", "cached": "\(counts["cached"] ?? 0)",
                "not_in_experiment": "\(counts["not_in_experiment"] ?? 0)", "malformed": "\(counts["malformed"] ?? 0)",
                "retried_at_end": "\(failed.count)", "failed": "\(still.count)",
                "seconds": "\(run.durationSeconds ?? 0)",
            ])
        if users > 0, Double(still.count) / Double(users) > options.failureAlertRatio {
            alerts?.raise(
                "book-rec-prewarm-failures",
                "book-rec pre-warm \(run.period): \(still.count) of \(users) users failed (above \(options.failureAlertRatio))",
                details: ["period": run.period, "failed": String(still.count), "users": String(users)])
        }
    }

    /// The outcomes, unless the work was cancelled (a pod shutting down): then no user has
    /// failed, the batch is not recorded, and another pod works it again.
    static func unlessCancelled<T>(_ outcomes: [Result<T, any Error>]) throws -> [Result<T, any Error>] {
        let cancelled = outcomes.contains {
            if case .failure(let error) = $0 { error is CancellationError } else { false }
        }
        if cancelled || Task.isCancelled { throw CancellationError() }
        return outcomes
    }

    /// One warning for the users that failed: how many, the first 100 of them, the first error.
    func warn(
        _ message: Logger.Message, _ failed: [(user: Int64, error: any Error)], _ context: Logger.Metadata
    ) {
        guard let first = failed.first else { return }
        let users = failed.map(\.user)
        var metadata = context
        metadata["count"] = "\(users.count)"
        metadata["users"] =
            "\(users.count <= 100 ? "\(users)" : "\(Array(users.prefix(100))) and \(users.count - 100) more")"
        metadata["first_error"] = "\(first.error)"
        logger.warning(message, metadata: metadata)
    }
}
