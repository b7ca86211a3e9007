import Foundation
import Logging
import Postgres
import ServiceLifecycle

/// Drains one kind of the retry table in every pod: due items go back to `attempt`; one that
/// succeeds is deleted, one that fails waits for its next backoff, and one out of attempts
/// raises an alert.
public final class RetryDrainer: Service {
    public let kind: String
    private let table: RetryTable
    private let attempt: @Sendable (RetryItem) async throws -> Void
    private let pollEvery: Duration
    private let batch: Int
    private let logger: Logger
    private let alerts: Alerts?

    public init(
        kind: String, table: RetryTable, pollEvery: Duration = .milliseconds(500), batch: Int = 16, logger: Logger,
        alerts: Alerts?, attempt: @escaping @Sendable (RetryItem) async throws -> Void
    ) {
        self.kind = kind
        self.table = table
        self.attempt = attempt
        self.pollEvery = pollEvery
        self.batch = batch
        self.logger = logger
        self.alerts = alerts
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let due = try await table.claimDue(kind: kind, limit: batch)
                for item in due { await drain(item) }
                if due.count == batch { continue }
            } catch {
                logger.warning("draining retries failed", metadata: ["kind": "\(kind)", "error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.pollEvery) }
        }
    }

    private func drain(_ item: RetryItem) async {
        do {
            try await attempt(item)
            try await table.succeeded(item.id)
            logger.info("retry succeeded", metadata: ["kind": "\(kind)", "id": "\(item.id)"])
        } catch {
            guard let exhausted = try? await table.failed(item, error: "\(error)") else { return }
            logger.warning(
                "retry failed", metadata: ["kind": "\(kind)", "id": "\(item.id)", "attempt": "\(item.attempts + 1)"])
            if exhausted {
                alerts?.raise(
                    "retry-exhausted",
                    "retry item \(item.id) of \(kind) is out of attempts (\(item.maxAttempts)): \(error)",
                    details: ["kind": kind, "task": item.taskID.map(String.init) ?? ""])
            }
        }
    }
}
