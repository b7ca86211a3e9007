import Foundation
import Logging
import PrewarmRuntime
import Redis
import ServiceLifecycle

/// Redis is a cache, never the record: a failover or a restart without persistence loses the
/// keys of lives already pre-warmed, and their tasks, succeeded in PostgreSQL, would never
/// run again. Every `checkEvery` each pod looks at the succeeded pre-warms whose stream has
/// not ended: one whose success flag is gone is queued again from the start (the first pod
/// to do so wins; the task table's unique key makes the others' attempt a no-op) and alerted
/// (`ka-cache-lost`). The verification pass of a running task covers the loss mid-task.
public struct KACacheGuard: Service {
    public let tasks: TaskQueue
    public let cache: KACache
    public let checkEvery: Duration
    let alerts: Alerts?
    let logger: Logger

    public init(tasks: TaskQueue, cache: KACache, checkEvery: Duration, alerts: Alerts?, logger: Logger) {
        self.tasks = tasks
        self.cache = cache
        self.checkEvery = checkEvery
        self.alerts = alerts
        self.logger = logger
    }

    public func run() async throws {
        await repeatEvery(checkEvery, "KA cache check", logger: logger) { try await check() }
    }

    /// One look; returns the lives queued again.
    @discardableResult
    public func check(now: Date = Date()) async throws -> [Int64] {
        let warmed = try await tasks.pool.withConnection { connection in
            try await connection.query(
                """
                SELECT key, payload::text FROM prewarm_tasks
                WHERE kind = $1 AND state = \(TaskState.succeeded.sql) AND (payload->'reservation'->>'ends_at')::timestamptz > $2
                """, [KAPrewarmTask.kind, now])
        }.rows.compactMap { row -> KATaskPayload? in
            do {
                return try JSONDecoder.prewarm.decode(KATaskPayload.self, from: Data((row[1].string ?? "").utf8))
            } catch {
                // Not this version's payload: its cache cannot be checked, and that is said.
                logger.warning(
                    "KA cache check skips a task it cannot read",
                    metadata: ["live": "\(row[0].string ?? "?")", "error": "\(error)"])
                return nil
            }
        }
        guard !warmed.isEmpty else { return [] }
        let flags = try await cache.redis.pipeline(
            warmed.map { RedisCommand("EXISTS", cache.doneKey(live: $0.reservation.liveID)) })
        var requeued: [Int64] = []
        for (payload, flag) in zip(warmed, flags) where flag == .integer(0) {
            let reservation = payload.reservation
            let enqueued = try await tasks.enqueue(
                kind: KAPrewarmTask.kind, key: String(reservation.liveID), payload: payload,
                deadline: reservation.startsAt, total: payload.users, maxAttempts: KAPrewarmQueue.maxAttempts,
                force: true)
            guard case .requeued = enqueued else { continue }
            requeued.append(reservation.liveID)
            alerts?.raise(
                "ka-cache-lost",
                "live \(reservation.liveID) of shop \(reservation.shopID) was pre-warmed, but Redis lost its keys: "
                    + "pre-warming it again",
                details: ["live": String(reservation.liveID), "shop": String(reservation.shopID)])
        }
        return requeued
    }
}
