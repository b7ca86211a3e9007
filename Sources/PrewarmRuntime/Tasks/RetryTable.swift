import Foundation
import Logging
import Postgres
import ServiceLifecycle

/// The retry table beside the tasks: an item whose write failed is recorded with its error
/// and retried later with exponential, jittered backoff, by whichever pod drains it first
/// (`FOR UPDATE SKIP LOCKED`), until it succeeds or runs out of attempts.
public struct RetryTable: Sendable {
    public let pool: PostgresPool
    public let backoff: Backoff

    public init(pool: PostgresPool, backoff: Backoff = Backoff(initial: .seconds(1), maximum: .seconds(300))) {
        self.pool = pool
        self.backoff = backoff
    }

    @discardableResult
    public func add(
        kind: String, taskID: Int64?, item: some Encodable, error: String, maxAttempts: Int = 8
    ) async throws -> Int64 {
        let json = String(decoding: try JSONEncoder.prewarm.encode(item), as: UTF8.self)
        return try await pool.withConnection { connection in
            try await connection.query(
                """
                INSERT INTO prewarm_retry (kind, task_id, item, max_attempts, next_attempt_at, last_error)
                VALUES ($1, $2, $3::jsonb, $4, now() + make_interval(secs => $5), $6) RETURNING id
                """,
                [kind, taskID, json, maxAttempts, backoff.delay(attempt: 0).seconds, String(error.prefix(2000))]
            ).first?[0].int64 ?? 0
        }
    }

    /// Takes up to `limit` due items of `kind`: each is hidden from other pods for
    /// `visibility` (its next attempt moves that far ahead), so a drainer that dies leaves it
    /// to be taken again then.
    public func claimDue(kind: String, limit: Int, visibility: Duration = .seconds(60)) async throws -> [RetryItem] {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_retry r SET next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
                FROM (SELECT id FROM prewarm_retry WHERE kind = $1 AND state = \(RetryState.pending.sql) AND next_attempt_at <= now()
                      ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
                WHERE r.id = due.id
                RETURNING r.\(RetryItem.columns.replacingOccurrences(of: "\n", with: " "))
                """, [kind, limit, visibility.seconds]
            ).rows.map(RetryItem.init(row:))
        }
    }

    public func succeeded(_ id: Int64) async throws {
        try await pool.withConnection { try await $0.query("DELETE FROM prewarm_retry WHERE id = $1", [id]) }
    }

    /// Records a failed attempt; returns true if the item is now out of attempts.
    public func failed(_ item: RetryItem, error: String) async throws -> Bool {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_retry SET attempts = attempts + 1, last_error = $2, updated_at = now(),
                    state = CASE WHEN attempts + 1 >= max_attempts THEN \(RetryState.exhausted.sql) ELSE \(RetryState.pending.sql) END,
                    next_attempt_at = now() + make_interval(secs => $3)
                WHERE id = $1 RETURNING state
                """, [item.id, String(error.prefix(2000)), backoff.delay(attempt: item.attempts + 1).seconds]
            ).first?[0].string == RetryState.exhausted.rawValue
        }
    }

    /// Deletes a task's items (the task starts again from scratch); returns how many.
    @discardableResult
    public func remove(taskID: Int64) async throws -> Int {
        try await pool.withConnection {
            try await $0.query("DELETE FROM prewarm_retry WHERE task_id = $1", [taskID]).affectedRows
        }
    }

    /// Gives a task's items that ran out of attempts a fresh set, due now (an operator's
    /// retry after fixing the cause); returns how many.
    @discardableResult
    public func revive(taskID: Int64) async throws -> Int {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_retry SET state = \(RetryState.pending.sql), attempts = 0, next_attempt_at = now(), updated_at = now()
                WHERE task_id = $1 AND state = \(RetryState.exhausted.sql)
                """, [taskID]
            ).affectedRows
        }
    }

    /// Items of a task by state: what still stands between it and success.
    public func count(taskID: Int64) async throws -> (pending: Int, exhausted: Int) {
        try await pool.withConnection { connection in
            let row = try await connection.query(
                """
                SELECT count(*) FILTER (WHERE state = \(RetryState.pending.sql)), count(*) FILTER (WHERE state = \(RetryState.exhausted.sql))
                FROM prewarm_retry WHERE task_id = $1
                """, [taskID]
            ).first
            return (row?[0].int ?? 0, row?[1].int ?? 0)
        }
    }

    /// Depth per kind and state, for status.
    public func depth() async throws -> [RetryDepth] {
        try await pool.withConnection { connection in
            try await connection.query(
                "SELECT kind, state, count(*) FROM prewarm_retry GROUP BY kind, state ORDER BY kind, state"
            ).rows.map {
                RetryDepth(
                    kind: $0[0].string ?? "", state: try RetryState(recorded: $0[1].string ?? ""), count: $0[2].int ?? 0
                )
            }
        }
    }
}

extension TaskQueue {
    /// An operator's retry (`prewarmctl ka retry`, the console's button): the failed or
    /// cancelled task queued again from its checkpoint and its exhausted retry rows revived.
    /// Nil when it has no failed or cancelled task of that key.
    public func retry(kind: String, key: String, reviving retries: RetryTable) async throws -> (
        task: TaskRecord, revived: Int
    )? {
        guard let task = try await retry(kind: kind, key: key) else { return nil }
        return (task, try await retries.revive(taskID: task.id))
    }
}
