import Foundation
import Logging
import Postgres
import TestSupport
import Testing

@testable import PrewarmRuntime

struct Payload: Codable, Equatable, Sendable {
    let shop: Int
}

@Suite("Durable tasks in PostgreSQL", .closesResources)
struct TaskQueueTests {
    @Test("the tables' states are TaskState's and RetryState's: the schema's CHECK and the enums agree")
    func statesAgree() async throws {
        let db = try await RuntimeDatabase.make()
        func checked(_ table: String) async throws -> Set<String> {
            let definition = try await db.pool.withConnection {
                try await $0.query(
                    // The table's constraints first (materialized): pg_get_constraintdef of
                    // another test's constraint, its schema dropped meanwhile, would fail.
                    """
                    WITH mine AS MATERIALIZED (
                      SELECT c.oid FROM pg_constraint c
                      JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
                      WHERE n.nspname = $1 AND t.relname = $2 AND c.contype = 'c')
                    SELECT definition FROM (SELECT pg_get_constraintdef(oid) AS definition FROM mine) d
                    WHERE definition LIKE '%state%'
                    """, [db.schema, table]
                ).first?[0].string ?? ""
            }
            // CHECK ((state = ANY (ARRAY['queued'::text, 'running'::text, ...])))
            let parts = definition.split(separator: "'", omittingEmptySubsequences: false)
            return Set(parts.indices.filter { $0 % 2 == 1 }.map { String(parts[$0]) })
        }
        #expect(try await checked("prewarm_tasks") == Set(TaskState.allCases.map(\.rawValue)))
        #expect(try await checked("prewarm_retry") == Set(RetryState.allCases.map(\.rawValue)))
    }

    @Test("two concurrent enqueues of one key give one task; a duplicate leaves it as it is")
    func uniqueEnqueue() async throws {
        let db = try await RuntimeDatabase.make(poolSize: 12)
        let queue = db.queue()
        let outcomes = try await withThrowingTaskGroup(of: TaskQueue.Enqueued.self) { group in
            for index in 0..<10 {
                group.addTask { try await queue.enqueue(kind: "ka", key: "live-1", payload: Payload(shop: index)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { if case .created = $0 { true } else { false } }.count == 1)
        #expect(outcomes.filter { if case .duplicate = $0 { true } else { false } }.count == 9)
        #expect(try await db.scalar("SELECT count(*) FROM prewarm_tasks WHERE key = 'live-1'") == 1)
    }

    @Test("runners claim with SKIP LOCKED, each task once, earliest deadline first")
    func claims() async throws {
        let db = try await RuntimeDatabase.make(poolSize: 8)
        let queue = db.queue()
        let now = Date()
        for index in 0..<12 {
            _ = try await queue.enqueue(
                kind: "ka", key: "t\(index)", payload: Payload(shop: index),
                deadline: now.addingTimeInterval(Double(12 - index) * 60))
        }
        let earliest = try await queue.claim(kind: "ka", owner: "first", limit: 1)
        #expect(earliest.map(\.key) == ["t11"], "the earliest deadline first")
        let claimed = try await withThrowingTaskGroup(of: [TaskRecord].self) { group in
            for runner in 0..<4 {
                group.addTask { try await queue.claim(kind: "ka", owner: "runner-\(runner)", limit: 5) }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claimed.count == 11)
        #expect(Set(claimed.map(\.key)).count == 11, "no task claimed twice")
        #expect(claimed.allSatisfy { $0.state == .running && $0.attempts == 1 })
        #expect(try await queue.claim(kind: "ka", owner: "late", limit: 5).isEmpty)
    }

    @Test("a task whose heartbeat stopped is rescued with its checkpoint; one that keeps beating never is")
    func rescueByHeartbeatAge() async throws {
        let db = try await RuntimeDatabase.make()
        let queue = db.queue(heartbeat: .milliseconds(200), staleAfter: .seconds(2))
        _ = try await queue.enqueue(kind: "ka", key: "dead", payload: Payload(shop: 1))
        _ = try await queue.enqueue(kind: "ka", key: "alive", payload: Payload(shop: 2))
        let tasks = try await queue.claim(kind: "ka", owner: "pod-a", limit: 2)
        let dead = try #require(tasks.first { $0.key == "dead" })
        let alive = try #require(tasks.first { $0.key == "alive" })
        #expect(
            try await queue.checkpoint(id: dead.id, owner: "pod-a", cursor: "500", done: 500, total: 2000, rate: 100))
        // The live one beats for three times the stale bound: a long task, never rescued.
        let deadline = ContinuousClock.now + .seconds(6)
        var rescued: [TaskRecord] = []
        while ContinuousClock.now < deadline {
            #expect(try await queue.heartbeat(id: alive.id, owner: "pod-a"))
            rescued += try await queue.rescue()
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(rescued.map(\.key) == ["dead"])
        let again = try #require(try await queue.claim(kind: "ka", owner: "pod-b", limit: 5).first)
        #expect(again.key == "dead" && again.cursor == "500" && again.done == 500, "resumed from its checkpoint")
        #expect(again.attempts == 2)
        #expect(
            try await queue.checkpoint(id: dead.id, owner: "pod-a", cursor: "600", done: 600, total: nil, rate: nil)
                == false, "the old runner can no longer write its progress")
        #expect(try await queue.task(kind: "ka", key: "alive")?.state == .running)
    }

    @Test("a failed attempt is retried after a backoff; out of attempts it fails; force queues a success again")
    func failuresAndForce() async throws {
        let db = try await RuntimeDatabase.make()
        let queue = db.queue()
        _ = try await queue.enqueue(kind: "ka", key: "flaky", payload: Payload(shop: 1), maxAttempts: 2)
        let first = try #require(try await queue.claim(kind: "ka", owner: "a", limit: 1).first)
        #expect(
            try await queue.fail(
                id: first.id, owner: "a", error: "redis down", retryable: true, retryIn: .milliseconds(800))
                == .queued)
        #expect(try await queue.claim(kind: "ka", owner: "a", limit: 1).isEmpty, "not before its backoff")
        try await Task.sleep(for: .milliseconds(900))
        let second = try #require(try await queue.claim(kind: "ka", owner: "a", limit: 1).first)
        #expect(second.attempts == 2 && second.lastError == "redis down")
        #expect(
            try await queue.fail(id: second.id, owner: "a", error: "still down", retryable: true, retryIn: .zero)
                == .failed)
        // A failed task of the key is queued again from the start by a new enqueue.
        guard
            case .requeued(let requeued) = try await queue.enqueue(kind: "ka", key: "flaky", payload: Payload(shop: 2))
        else {
            Issue.record("a failed task was not queued again")
            return
        }
        #expect(requeued.attempts == 0 && requeued.state == .queued)
        let third = try #require(try await queue.claim(kind: "ka", owner: "a", limit: 1).first)
        #expect(try await queue.succeed(id: third.id, owner: "a"))
        guard case .duplicate = try await queue.enqueue(kind: "ka", key: "flaky", payload: Payload(shop: 3)) else {
            Issue.record("a succeeded task was queued again without force")
            return
        }
        guard case .requeued = try await queue.enqueue(kind: "ka", key: "flaky", payload: Payload(shop: 3), force: true)
        else {
            Issue.record("force did not queue a succeeded task again")
            return
        }
    }

    @Test("finished tasks are pruned by age and state; queued and running ones never")
    func prune() async throws {
        let db = try await RuntimeDatabase.make()
        let queue = TaskQueue(
            pool: db.pool, settings: TaskSettings(keepSucceeded: .seconds(60), keepFailed: .seconds(3600)))
        for key in ["old-ok", "new-ok", "old-failed", "queued"] {
            _ = try await queue.enqueue(kind: "ka", key: key, payload: Payload(shop: 1))
        }
        for task in try await queue.claim(kind: "ka", owner: "a", limit: 3) {
            if task.key == "old-failed" {
                _ = try await queue.fail(id: task.id, owner: "a", error: "x", retryable: false, retryIn: .zero)
            } else {
                _ = try await queue.succeed(id: task.id, owner: "a")
            }
        }
        try await db.pool.withConnection {
            try await $0.query(
                "UPDATE prewarm_tasks SET finished_at = now() - interval '2 minutes' WHERE key IN ('old-ok', 'old-failed')"
            )
        }
        #expect(try await queue.prune() == 1)
        let left = Set(try await queue.tasks(since: Date(timeIntervalSince1970: 0)).map(\.key))
        #expect(left == ["new-ok", "old-failed", "queued"])
    }
}
