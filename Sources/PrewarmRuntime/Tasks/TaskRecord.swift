import Foundation
import Postgres

/// One row of `prewarm_tasks`.
public struct TaskRecord: Sendable, Codable, Equatable {
    public var id: Int64
    public var kind: String
    public var key: String
    public var state: TaskState
    /// The product's own JSON.
    public var payload: String
    /// Where the work stands (the last key written), saved with each step.
    public var cursor: String?
    public var done: Int64
    public var total: Int64?
    /// Items per second, as the runner last measured.
    public var rate: Double?
    public var deadline: Date?
    public var dueAt: Date?
    public var attempts: Int
    public var maxAttempts: Int
    public var lastError: String?
    public var owner: String?
    public var heartbeatAt: Date?
    public var createdAt: Date?
    public var startedAt: Date?
    public var finishedAt: Date?

    /// Seconds to go at the measured rate, if known.
    public var etaSeconds: Double? {
        guard let total, let rate, rate > 0, state.isActive else { return nil }
        return Double(max(total - done, 0)) / rate
    }

    public func decodePayload<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder.prewarm.decode(type, from: Data(payload.utf8))
    }

    static let columns = """
        id, kind, key, state, payload::text, cursor, done, total, rate,
        extract(epoch FROM deadline)::float8, extract(epoch FROM due_at)::float8, attempts, max_attempts, last_error,
        owner, extract(epoch FROM heartbeat_at)::float8, extract(epoch FROM created_at)::float8,
        extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8
        """

    static let columnCount = 19

    init(row: PostgresRow) throws {
        func date(_ index: Int) -> Date? { row[index].double.map { Date(timeIntervalSince1970: $0) } }
        id = row[0].int64 ?? 0
        kind = row[1].string ?? ""
        key = row[2].string ?? ""
        state = try TaskState(recorded: row[3].string ?? "")
        payload = row[4].string ?? "{}"
        cursor = row[5].string
        done = row[6].int64 ?? 0
        total = row[7].int64
        rate = row[8].double
        deadline = date(9)
        dueAt = date(10)
        attempts = row[11].int ?? 0
        maxAttempts = row[12].int ?? 0
        lastError = row[13].string
        owner = row[14].string
        heartbeatAt = date(15)
        createdAt = date(16)
        startedAt = date(17)
        finishedAt = date(18)
    }
}
