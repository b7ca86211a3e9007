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

    /// How long a fence's copy in a cluster slot lives: past any run's retention.
    public static let copyLifetime = Duration.seconds(2 * 86_400)

    /// The key and argument of `JobRuns.fence`'s `fenced(key, fence)` in a script over keys
    /// of `key`'s slot: the run's record and the attempt on one server; on a cluster, the
    /// fence's copy in that slot (`prewarm:fence:<job>:<period>{<the slot's tag>}`) and `copy:{attempt}:{ms}`.
    public func guarding(_ key: String, on redis: any RedisClient) -> (key: String, argument: String) {
        guard redis.splitsKeysBySlot else { return (progressKey, String(attempt)) }
        return (
            "prewarm:fence:\(job):\(period)" + RedisKeySlot.tag(forSlot: RedisKeySlot.of(key)),
            "copy:\(attempt):\(Self.copyLifetime.milliseconds)"
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
}

extension RedisClient {
    /// Runs `script` over `keys` once per group that may meet in one script (all of them on
    /// one server, a slot's on a cluster), the groups at once. Each call's KEYS are the
    /// fence's guard (`AttemptFence.guarding`; without a fence, the group's first key) and
    /// the group's keys; its ARGV the fence argument ('' without a fence), `shared`, then
    /// what `perKey` appends for each of the group's keys. Returns each group's key indices
    /// (into `keys`) and reply, in group order.
    public func runFenced(
        _ script: RedisScript, fence: AttemptFence?, keys: [String], shared: [any RedisArgument] = [],
        perKey: (Int, inout RedisArguments) throws -> Void
    ) async throws -> [(indices: [Int], reply: RedisReply)] {
        try await fence?.check(on: self)
        var calls: [(indices: [Int], keys: RedisArguments, arguments: RedisArguments)] = []
        for group in atomicGroups(of: keys) {
            var callKeys = RedisArguments()
            var arguments = RedisArguments()
            let guarded: (key: String, argument: String) =
                fence?.guarding(keys[group[0]], on: self) ?? (keys[group[0]], "")
            callKeys.append(guarded.key)
            arguments.append(guarded.argument)
            for argument in shared { arguments.append(argument) }
            for index in group {
                callKeys.append(keys[index])
                try perKey(index, &arguments)
            }
            calls.append((group, callKeys, arguments))
        }
        if calls.count == 1 {
            return [(calls[0].indices, try await run(script, keys: calls[0].keys, arguments: calls[0].arguments))]
        }
        return try await withThrowingTaskGroup(of: (Int, RedisReply).self) { tasks in
            for (position, call) in calls.enumerated() {
                tasks.addTask { (position, try await self.run(script, keys: call.keys, arguments: call.arguments)) }
            }
            var replies = [RedisReply?](repeating: nil, count: calls.count)
            for try await (position, reply) in tasks { replies[position] = reply }
            return zip(calls, replies).map { ($0.indices, $1!) }
        }
    }
}
