import Foundation
import Postgres

/// The runtime's durable task table (`prewarm_tasks`): work that runs for minutes to hours
/// beside a consume loop, survives the pod that started it, and resumes from its checkpoint.
///
/// - Enqueue is unique by (kind, key) through a unique index: two concurrent enqueues of one
///   key give one task.
/// - Runners claim due tasks with `FOR UPDATE SKIP LOCKED`, earliest deadline first, and
///   beat a heartbeat while they work; every write of a runner names it as owner, so a
///   runner that lost its task (rescued, cancelled) finds out at its next write.
/// - A running task whose heartbeat stopped is rescued (queued again, cursor kept).
/// - Failures are retried with exponential, jittered backoff up to `max_attempts`.
/// - Finished tasks are pruned by age, per state.
public struct TaskQueue: Sendable {
    public let pool: PostgresPool
    public let settings: TaskSettings

    public init(pool: PostgresPool, settings: TaskSettings) {
        self.pool = pool
        self.settings = settings
    }

    public enum Enqueued: Sendable, Equatable {
        /// A new task.
        case created(TaskRecord)
        /// An earlier task of the key (failed, cancelled, or succeeded and forced) queued again
        /// from the start.
        case requeued(TaskRecord)
        /// The key has a task queued, running or (unforced) succeeded: nothing was changed.
        case duplicate(TaskRecord)
    }

    /// Queues a task. `force` queues again a key whose task succeeded (never one running).
    public func enqueue(
        kind: String, key: String, payload: some Encodable, deadline: Date? = nil, total: Int64? = nil,
        maxAttempts: Int = 5, force: Bool = false
    ) async throws -> Enqueued {
        let json = String(decoding: try JSONEncoder.prewarm.encode(payload), as: UTF8.self)
        return try await pool.withConnection { connection in
            let row = try await connection.query(
                """
                INSERT INTO prewarm_tasks AS t (kind, key, payload, deadline, total, max_attempts)
                VALUES ($1, $2, $3::jsonb, $4, $5, $6)
                ON CONFLICT (kind, key) DO UPDATE SET
                    state = \(TaskState.queued.sql), payload = excluded.payload, deadline = excluded.deadline, total = excluded.total,
                    max_attempts = excluded.max_attempts, cursor = NULL, done = 0, rate = NULL, attempts = 0,
                    last_error = NULL, owner = NULL, heartbeat_at = NULL, started_at = NULL, finished_at = NULL,
                    due_at = now(), updated_at = now()
                WHERE t.state IN \(TaskState.sql(.failed, .cancelled)) OR ($7 AND t.state = \(TaskState.succeeded.sql))
                RETURNING \(TaskRecord.columns), (xmax = 0)
                """, [kind, key, json, deadline, total, maxAttempts, force]
            ).first
            if let row {
                let record = try TaskRecord(row: row)
                return row[TaskRecord.columnCount].bool == true ? .created(record) : .requeued(record)
            }
            let existing = try await connection.query(
                "SELECT \(TaskRecord.columns) FROM prewarm_tasks WHERE kind = $1 AND key = $2", [kind, key]
            ).first
            guard let existing else {
                throw PostgresError(.server, operation: "enqueue", message: "task \(kind)/\(key) vanished")
            }
            return .duplicate(try TaskRecord(row: existing))
        }
    }

    /// Takes up to `limit` due tasks of `kind` for `owner`, earliest deadline first.
    public func claim(kind: String, owner: String, limit: Int) async throws -> [TaskRecord] {
        guard limit > 0 else { return [] }
        return try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_tasks t SET state = \(TaskState.running.sql), owner = $2, heartbeat_at = now(),
                    attempts = t.attempts + 1, started_at = coalesce(t.started_at, now()), updated_at = now()
                FROM (SELECT id FROM prewarm_tasks WHERE kind = $1 AND state = \(TaskState.queued.sql) AND due_at <= now()
                      ORDER BY deadline NULLS LAST, id LIMIT $3 FOR UPDATE SKIP LOCKED) picked
                WHERE t.id = picked.id
                RETURNING \(TaskRecord.columns.replacingOccurrences(of: "\n", with: " ").prefixed("t."))
                """, [kind, owner, limit]
            ).rows.map(TaskRecord.init(row:))
        }
    }

    /// Returns false if `owner` no longer holds the task (rescued by another pod, cancelled).
    public func heartbeat(id: Int64, owner: String) async throws -> Bool {
        try await update("heartbeat_at = now()", id: id, owner: owner)
    }

    /// Saves where the task stands; false if `owner` no longer holds it.
    public func checkpoint(
        id: Int64, owner: String, cursor: String?, done: Int64, total: Int64?, rate: Double?
    ) async throws -> Bool {
        try await update(
            "cursor = $3, done = $4, total = coalesce($5, total), rate = coalesce($6, rate), heartbeat_at = now()",
            id: id, owner: owner, [cursor, done, total, rate])
    }

    public func succeed(id: Int64, owner: String) async throws -> Bool {
        try await update(
            "state = \(TaskState.succeeded.sql), finished_at = now(), last_error = NULL", id: id, owner: owner)
    }

    /// Ends an attempt that failed: queued again after `retryIn` if `retryable` and attempts
    /// remain, failed otherwise. Returns the new state (nil if `owner` no longer held it).
    public func fail(id: Int64, owner: String, error: String, retryable: Bool, retryIn: Duration) async throws
        -> TaskState?
    {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_tasks SET
                    state = CASE WHEN $3 AND attempts < max_attempts THEN \(TaskState.queued.sql) ELSE \(TaskState.failed.sql) END,
                    finished_at = CASE WHEN $3 AND attempts < max_attempts THEN NULL ELSE now() END,
                    due_at = now() + make_interval(secs => $4), last_error = $5, owner = NULL, updated_at = now()
                WHERE id = $1 AND owner = $2 AND state = \(TaskState.running.sql)
                RETURNING state
                """, [id, owner, retryable, retryIn.seconds, String(error.prefix(2000))]
            ).first.map { try TaskState(recorded: $0[0].string ?? "") }
        }
    }

    /// Gives a task back at once, its attempt not counted (a graceful shutdown): another
    /// pod resumes it from its checkpoint.
    public func release(id: Int64, owner: String) async throws {
        _ = try await update(
            "state = \(TaskState.queued.sql), owner = NULL, due_at = now(), attempts = greatest(attempts - 1, 0)",
            id: id,
            owner: owner)
    }

    /// Queues again the running tasks whose heartbeat is older than `staleAfter` (their runner
    /// died), their checkpoint kept; a task out of attempts fails instead. Returns them.
    public func rescue() async throws -> [TaskRecord] {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_tasks SET
                    state = CASE WHEN attempts >= max_attempts THEN \(TaskState.failed.sql) ELSE \(TaskState.queued.sql) END,
                    finished_at = CASE WHEN attempts >= max_attempts THEN now() ELSE NULL END,
                    last_error = 'heartbeat stopped (runner ' || coalesce(owner, '?') || ')',
                    owner = NULL, due_at = now(), updated_at = now()
                WHERE state = \(TaskState.running.sql) AND heartbeat_at < now() - make_interval(secs => $1)
                RETURNING \(TaskRecord.columns)
                """, [settings.staleAfter.seconds]
            ).rows.map(TaskRecord.init(row:))
        }
    }

    /// Queues a failed or cancelled task again from its checkpoint, with a fresh set of
    /// attempts (an operator's retry after fixing the cause); nil if it has no such task.
    public func retry(kind: String, key: String) async throws -> TaskRecord? {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_tasks SET state = \(TaskState.queued.sql), attempts = 0, owner = NULL, due_at = now(),
                    finished_at = NULL, updated_at = now()
                WHERE kind = $1 AND key = $2 AND state IN \(TaskState.sql(.failed, .cancelled))
                RETURNING \(TaskRecord.columns)
                """, [kind, key]
            ).first.map(TaskRecord.init(row:))
        }
    }

    /// Cancels a queued or running task (a running one stops at its next heartbeat).
    public func cancel(kind: String, key: String) async throws -> Bool {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_tasks SET state = \(TaskState.cancelled.sql), finished_at = now(), owner = NULL, updated_at = now()
                WHERE kind = $1 AND key = $2 AND state IN \(TaskState.sql(.queued, .running))
                """, [kind, key]
            ).affectedRows == 1
        }
    }

    /// Deletes finished tasks older than their state's keep time; returns how many.
    @discardableResult
    public func prune() async throws -> Int {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                DELETE FROM prewarm_tasks
                WHERE (state IN \(TaskState.sql(.succeeded, .cancelled)) AND finished_at < now() - make_interval(secs => $1))
                   OR (state = \(TaskState.failed.sql) AND finished_at < now() - make_interval(secs => $2))
                """, [settings.keepSucceeded.seconds, settings.keepFailed.seconds]
            ).affectedRows
        }
    }

    public func task(kind: String, key: String) async throws -> TaskRecord? {
        try await pool.withConnection { connection in
            try await connection.query(
                "SELECT \(TaskRecord.columns) FROM prewarm_tasks WHERE kind = $1 AND key = $2", [kind, key]
            ).first.map(TaskRecord.init(row:))
        }
    }

    /// Tasks not finished, and those finished since `since`, earliest deadline first.
    public func tasks(since: Date) async throws -> [TaskRecord] {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                SELECT \(TaskRecord.columns) FROM prewarm_tasks
                WHERE state IN \(TaskState.sql(.queued, .running)) OR finished_at >= $1
                ORDER BY deadline NULLS LAST, id
                """, [since]
            ).rows.map(TaskRecord.init(row:))
        }
    }

    private func update(
        _ assignments: String, id: Int64, owner: String, _ more: [(any PostgresEncodable)?] = []
    ) async throws -> Bool {
        try await pool.withConnection { connection in
            try await connection.query(
                """
                UPDATE prewarm_tasks SET \(assignments), updated_at = now()
                WHERE id = $1 AND owner = $2 AND state = \(TaskState.running.sql)
                """, [id, owner] + more
            ).affectedRows == 1
        }
    }
}

extension String {
    /// The column list with each plain column qualified by `prefix` (for UPDATE ... FROM).
    func prefixed(_ prefix: String) -> String {
        split(separator: ",").map { column in
            let trimmed = column.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("extract(epoch FROM ") {
                return trimmed.replacingOccurrences(of: "extract(epoch FROM ", with: "extract(epoch FROM \(prefix)")
            }
            return prefix + trimmed
        }.joined(separator: ", ")
    }
}
