import Foundation
import Logging
import Postgres
import ServiceLifecycle

/// One row of `prewarm_retry`: an item of work (a key range of a task, say) whose write
/// failed, waiting for its next attempt.
public struct RetryItem: Sendable, Codable, Equatable {
    public var id: Int64
    public var kind: String
    public var taskID: Int64?
    /// The product's own JSON.
    public var item: String
    public var state: RetryState
    public var attempts: Int
    public var maxAttempts: Int
    public var nextAttemptAt: Date?
    public var lastError: String?

    public func decodeItem<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder.prewarm.decode(type, from: Data(item.utf8))
    }

    static let columns = """
        id, kind, task_id, item::text, state, attempts, max_attempts, extract(epoch FROM next_attempt_at)::float8,
        last_error
        """

    init(row: PostgresRow) throws {
        id = row[0].int64 ?? 0
        kind = row[1].string ?? ""
        taskID = row[2].int64
        item = row[3].string ?? "{}"
        state = try RetryState(recorded: row[4].string ?? "")
        attempts = row[5].int ?? 0
        maxAttempts = row[6].int ?? 0
        nextAttemptAt = row[7].double.map { Date(timeIntervalSince1970: $0) }
        lastError = row[8].string
    }
}

public struct RetryDepth: Sendable, Codable, Equatable {
    public var kind: String
    public var state: RetryState
    public var count: Int
}
