import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Works the tasks of one kind in every pod: claims due tasks (up to `concurrency` at once,
/// earliest deadline first), beats their heartbeats, rescues tasks whose runner died (by
/// heartbeat age), and prunes finished ones. On graceful shutdown it stops claiming,
/// cancels the tasks in hand and gives them back, so another pod resumes them from their
/// checkpoints at once.
public final class TaskRunner: Service {
    public let kind: String
    public let queue: TaskQueue
    private let handler: any TaskHandler
    private let concurrency: Int
    private let owner: String
    private let pollEvery: Duration
    private let retry: Backoff
    private let logger: Logger
    private let alerts: Alerts?
    /// Tasks claimed and not yet ended here.
    private let busy = Atomic<Int>(0)

    public init(
        kind: String, queue: TaskQueue, handler: any TaskHandler, concurrency: Int, owner: String,
        pollEvery: Duration = .milliseconds(500),
        retry: Backoff = Backoff(initial: .seconds(2), maximum: .seconds(300)),
        logger: Logger, alerts: Alerts?
    ) {
        self.kind = kind
        self.queue = queue
        self.handler = handler
        self.concurrency = max(concurrency, 1)
        self.owner = owner
        self.pollEvery = pollEvery
        self.retry = retry
        self.logger = logger
        self.alerts = alerts
    }

    public func run() async throws {
        // Claims happen on a tick of `pollEvery` and as soon as a task ends here, so a
        // free slot never idles until the next tick while tasks are due.
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask { await self.maintain() }
            group.addTask {
                while !Task.isShuttingDownGracefully && !Task.isCancelled {
                    wake.yield()
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.pollEvery) }
                }
                wake.finish()
            }
            var lastError: String?
            for await _ in wakeups {
                let free = concurrency - self.busy.load(ordering: .relaxed)
                guard free > 0, !Task.isShuttingDownGracefully, !Task.isCancelled else { continue }
                do {
                    for record in try await queue.claim(kind: kind, owner: owner, limit: free) {
                        self.busy.add(1, ordering: .relaxed)
                        let started = ContinuousClock.now
                        group.addTask {
                            await self.work(record, started: started)
                            self.busy.subtract(1, ordering: .relaxed)
                            wake.yield()
                        }
                    }
                    lastError = nil
                } catch {
                    if lastError != "\(error)" {
                        logger.warning("claiming tasks failed", metadata: ["kind": "\(kind)", "error": "\(error)"])
                    }
                    lastError = "\(error)"
                }
            }
        }
    }

    /// Rescues and prunes, in every pod (the statements are safe to race).
    private func maintain() async {
        var lastPrune = ContinuousClock.now - .seconds(3600)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                for task in try await queue.rescue() {
                    logger.warning(
                        "task rescued: its runner stopped beating",
                        metadata: [
                            "kind": "\(task.kind)", "key": "\(task.key)", "state": "\(task.state)",
                            "cursor": "\(task.cursor ?? "")", "done": "\(task.done)",
                        ])
                    if task.state == .failed {
                        alerts?.raise(
                            "task-failed", "task \(task.kind)/\(task.key) failed: its runners kept dying",
                            details: ["kind": task.kind, "key": task.key])
                    }
                }
                if ContinuousClock.now - lastPrune > .seconds(3600) {
                    let pruned = try await queue.prune()
                    if pruned > 0 { logger.info("finished tasks pruned", metadata: ["count": "\(pruned)"]) }
                    lastPrune = .now
                }
            } catch {
                logger.warning("task maintenance failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.queue.settings.staleAfter / 3) }
        }
    }

    private func work(_ record: TaskRecord, started: ContinuousClock.Instant) async {
        let execution = TaskExecution(record: record, owner: owner, queue: queue)
        logger.info(
            "task starting",
            metadata: [
                "kind": "\(kind)", "key": "\(record.key)", "attempt": "\(record.attempts)",
                "cursor": "\(record.cursor ?? "")",
            ])
        do {
            try await cancelWhenGracefulShutdown {
                try await self.beating(record.id) { try await self.handler.run(execution) }
            }
            guard try await queue.succeed(id: record.id, owner: owner) else { throw TaskLost(id: record.id) }
            logger.info(
                "task succeeded",
                metadata: ["kind": "\(kind)", "key": "\(record.key)", "seconds": "\(ContinuousClock.now - started)"])
        } catch let error where error is CancellationError || Task.isShuttingDownGracefully {
            try? await queue.release(id: record.id, owner: owner)
            logger.notice(
                "task given back at shutdown; another pod resumes it", metadata: ["key": "\(record.key)"])
        } catch let lost as TaskLost {
            logger.warning("task lost", metadata: ["key": "\(record.key)", "error": "\(lost)"])
        } catch {
            let retryable = Failure.kind(of: error) == .transient
            let state = try? await queue.fail(
                id: record.id, owner: owner, error: "\(error)", retryable: retryable,
                retryIn: retry.delay(attempt: record.attempts - 1))
            logger.error(
                "task attempt failed",
                metadata: [
                    "kind": "\(kind)", "key": "\(record.key)", "attempt": "\(record.attempts)",
                    "now": "\(state.map(\.rawValue) ?? "?")", "error": "\(error)",
                ])
            if state == .failed {
                alerts?.raise(
                    "task-failed",
                    "task \(kind)/\(record.key) failed after \(record.attempts) attempts: \(error)",
                    details: ["kind": kind, "key": record.key])
            }
        }
    }

    /// Runs `body` while beating the task's heartbeat; cancels it with `TaskLost` the moment
    /// a beat finds the task is no longer ours. A beat that cannot reach the database is
    /// retried; the task is rescued elsewhere only once the beats have stopped for
    /// `staleAfter`, and the next checkpoint then fails.
    private func beating(_ id: Int64, _ body: @escaping @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await body() }
            group.addTask {
                while true {
                    try await Task.sleep(for: self.queue.settings.heartbeat)
                    do {
                        guard try await self.queue.heartbeat(id: id, owner: self.owner) else { throw TaskLost(id: id) }
                    } catch let lost as TaskLost {
                        throw lost
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        self.logger.warning("task heartbeat failed", metadata: ["id": "\(id)", "error": "\(error)"])
                    }
                }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}
