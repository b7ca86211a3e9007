import CoreMetrics
import Foundation
import Logging
import Postgres
import Redis
import Synchronization

/// The winner's hold on a run: its lease, and the fenced writes of its progress.
public final class JobRunLease: Sendable {
    public let job: String
    public let period: String
    public let attempt: Int
    public let lease: RedisLease
    private let runs: JobRuns

    init(runs: JobRuns, job: String, period: String, attempt: Int, lease: RedisLease) {
        self.runs = runs
        self.job = job
        self.period = period
        self.attempt = attempt
        self.lease = lease
    }

    private var keys: [any RedisArgument] {
        [JobRuns.leaseKey(job: job, period: period), JobRuns.progressKey(job: job, period: period)]
    }

    /// Records progress fields while the lease is ours (and extends it); throws `LeaseLost`
    /// when it is not, so a winner that stalled past its lease stops producing.
    public func record(_ fields: [(String, any RedisArgument)]) async throws {
        try lease.ensureHeld()
        var arguments: [any RedisArgument] = [lease.token, runs.settings.lease.milliseconds]
        for (name, value) in fields {
            arguments.append(name)
            arguments.append(value)
        }
        guard try await runs.redis.run(JobRunScripts.record, keys: keys, arguments: arguments) == .integer(1) else {
            throw LeaseLost(key: lease.key, reason: "another pod took the run over")
        }
    }

    /// The fan-out produced every batch. Returns the run's final state if every batch was
    /// already recorded (or there were none).
    func finishFanOut(batches: Int, items: Int) async throws -> JobRunState? {
        let reply = try await runs.redis.run(
            JobRunScripts.finishFanOut,
            keys: keys + [JobRuns.doneKey(job: job, period: period), JobRuns.activeKey],
            arguments: [
                lease.token, JobRuns.nowMilliseconds, runs.settings.retention.milliseconds, batches, items,
                "\(job):\(period)",
            ])
        let answer = try JobRunReply<FinishFanOutWord>(reply, of: JobRunScripts.finishFanOut)
        switch answer.word {
        case .fannedOut: return try answer.finalState
        case .lost: throw LeaseLost(key: lease.key, reason: "another pod took the run over")
        }
    }

    /// Ends a run worked in place: `succeeded` when its body finished, `failed` with the error
    /// when its body (or a fan-out) threw.
    func finish(_ state: JobRunState, error: String = "") async throws {
        _ = try await runs.redis.run(
            JobRunScripts.finish,
            keys: keys + [JobRuns.doneKey(job: job, period: period), JobRuns.activeKey],
            arguments: [
                lease.token, JobRuns.nowMilliseconds, runs.settings.retention.milliseconds, state.rawValue,
                String(error.prefix(500)), "\(job):\(period)",
            ])
    }
}
