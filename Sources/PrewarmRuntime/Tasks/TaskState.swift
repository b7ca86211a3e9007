/// Where a durable task stands (`prewarm_tasks.state`): the one place its words are spelled
/// (the schema's CHECK constraint is the database's copy, and a test keeps the two equal).
///
/// queued → running → succeeded, or failed (out of attempts), or queued again (a retry, a
/// rescue after its runner died, a requeue); queued or running → cancelled.
public enum TaskState: String, Sendable, Codable, CaseIterable {
    case queued
    case running
    case succeeded
    case failed
    case cancelled

    /// Still to be worked, or being worked.
    public var isActive: Bool { self == .queued || self == .running }

    /// A row's state; an unknown word is a bug (or a newer version's row) to surface.
    public init(recorded text: String) throws {
        guard let state = TaskState(rawValue: text) else { throw UnknownReply(what: "task state", reply: text) }
        self = state
    }

    /// As a SQL literal, for the queue's statements (`state = 'queued'`).
    package var sql: String { "'\(rawValue)'" }

    /// A SQL list for `IN`: `('failed', 'cancelled')`.
    static func sql(_ states: TaskState...) -> String { "(" + states.map(\.sql).joined(separator: ", ") + ")" }
}

/// Where an item of the retry table stands (`prewarm_retry.state`): pending (retried when
/// due) or exhausted (out of attempts; what keeps its task from succeeding).
public enum RetryState: String, Sendable, Codable, CaseIterable {
    case pending
    case exhausted

    public init(recorded text: String) throws {
        guard let state = RetryState(rawValue: text) else { throw UnknownReply(what: "retry state", reply: text) }
        self = state
    }

    package var sql: String { "'\(rawValue)'" }
}
