import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Thrown to a task's body when its runner no longer holds the task: another pod rescued
/// it (this runner's heartbeat stopped reaching the database) or an operator cancelled it.
public struct TaskLost: Error, CustomStringConvertible, ClassifiedError {
    public let id: Int64
    public var failureKind: FailureKind { .transient }
    public var description: String { "task \(id) is no longer ours (rescued or cancelled)" }
}

/// A running task as its body sees it: the record it was claimed with, and the checkpoint.
public final class TaskExecution: Sendable {
    public let record: TaskRecord
    public let owner: String
    private let queue: TaskQueue

    init(record: TaskRecord, owner: String, queue: TaskQueue) {
        self.record = record
        self.owner = owner
        self.queue = queue
    }

    /// Saves where the task stands, after the step's effects are durable; throws `TaskLost`
    /// if the task is no longer this runner's (its body must stop writing).
    public func checkpoint(cursor: String?, done: Int64, total: Int64? = nil, rate: Double? = nil) async throws {
        guard
            try await queue.checkpoint(
                id: record.id, owner: owner, cursor: cursor, done: done, total: total, rate: rate)
        else { throw TaskLost(id: record.id) }
    }
}
