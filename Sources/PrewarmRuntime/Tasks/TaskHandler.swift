import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// What a product does with one durable task. Its body resumes from `record.cursor` and
/// checkpoints after each step; a transient error retries the task later (backoff), any
/// other fails it for good.
public protocol TaskHandler: Sendable {
    func run(_ task: TaskExecution) async throws
}
