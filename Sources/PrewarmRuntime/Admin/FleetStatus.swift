import Foundation
import Postgres
import PrewarmConfiguration
import Redis

/// Where the fleet stands, read from Redis and PostgreSQL only (so it works from any machine
/// that reaches them): job runs of the window, tasks, the retry table, consumer lag as the
/// workers last published it, and the latest alerts. Products add their rows through these
/// same records, never through code of their own here.
public struct FleetStatus: Sendable, Codable {
    public var at: Date
    public var runs: [JobRunProgress]
    public var tasks: [TaskStatus]
    public var retries: [RetryDepth]
    /// Group to partition (`topic[n]`) to messages behind.
    public var lag: [String: [String: Int64]]
    /// Where `lag` comes from: `kafka` (every group of the catalog over all its partitions,
    /// committed offsets against the high watermarks) or `pods` (what the live pods last
    /// published, when Kafka cannot be asked).
    public var lagSource: String = "pods"
    public var alerts: [Alert]

    /// A task with what its retry rows say.
    public struct TaskStatus: Sendable, Codable {
        public var task: TaskRecord
        public var retryPending: Int
        public var retryExhausted: Int
    }

    /// Reads it all; `postgres` nil (or a database without the task tables) leaves tasks
    /// and retries empty.
    public static func read(
        redis: any RedisClient, postgres: PostgresConnection?, runsSince: Date, alerts: Int = 10
    ) async throws -> FleetStatus {
        let now = Date()
        let runs = try await JobRuns(
            redis: redis, settings: JobRunSettings(), owner: "status", logger: .init(label: "status"), alerts: nil
        ).recent(since: runsSince)
        var tasks: [TaskStatus] = []
        var retries: [RetryDepth] = []
        if let postgres,
            try await postgres.query("SELECT to_regclass('prewarm_retry') IS NOT NULL").first?[0].bool == true
        {
            let rows = try await postgres.query(
                """
                SELECT \(TaskRecord.columns),
                    (SELECT count(*) FROM prewarm_retry r WHERE r.task_id = t.id AND r.state = \(RetryState.pending.sql)),
                    (SELECT count(*) FROM prewarm_retry r WHERE r.task_id = t.id AND r.state = \(RetryState.exhausted.sql))
                FROM prewarm_tasks t
                WHERE state IN \(TaskState.sql(.queued, .running)) OR finished_at >= $1
                ORDER BY deadline NULLS LAST, id
                """, [runsSince])
            tasks = try rows.rows.map {
                TaskStatus(
                    task: try TaskRecord(row: $0), retryPending: $0[TaskRecord.columnCount].int ?? 0,
                    retryExhausted: $0[TaskRecord.columnCount + 1].int ?? 0)
            }
            retries = try await postgres.query(
                "SELECT kind, state, count(*) FROM prewarm_retry GROUP BY kind, state ORDER BY kind, state"
            ).rows.map {
                RetryDepth(
                    kind: $0[0].string ?? "", state: try RetryState(recorded: $0[1].string ?? ""), count: $0[2].int ?? 0
                )
            }
        }
        return FleetStatus(
            at: now, runs: runs, tasks: tasks, retries: retries, lag: try await LagBoard.read(redis),
            alerts: try await Alerts.recent(redis, count: alerts))
    }
}

extension JobRunProgress {
    /// Items done (and failed) of the items the run has: the final count once its fan-out
    /// ended, the expected count before.
    public var itemsFinished: Int { itemsDone + itemsFailed }
    public var itemsKnown: Int? { batchesTotal != nil ? itemsProduced : itemsExpected }
}
