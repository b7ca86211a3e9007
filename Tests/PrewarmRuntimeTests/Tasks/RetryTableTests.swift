import CoreMetrics
import Foundation
import Logging
import Redis
import ServiceLifecycle
import TestSupport
import Testing

@testable import PrewarmRuntime

struct KeyRange: Codable, Equatable, Sendable {
    let from: Int64
    let to: Int64
}

@Suite("The retry table", .closesResources)
struct RetryTableTests {
    @Test("a due item is taken by one drainer at a time, hidden while it is tried, and backs off when it fails")
    func claimAndBackOff() async throws {
        let db = try await RuntimeDatabase.make()
        let table = RetryTable(pool: db.pool, backoff: Backoff(initial: .milliseconds(300), maximum: .seconds(1)))
        let id = try await table.add(kind: "ka", taskID: nil, item: KeyRange(from: 500, to: 1000), error: "down")
        #expect(try await table.claimDue(kind: "ka", limit: 10).isEmpty, "not before its first backoff")
        try await Task.sleep(for: .milliseconds(350))
        let claims = try await withThrowingTaskGroup(of: [RetryItem].self) { group in
            for _ in 0..<4 {
                group.addTask { try await table.claimDue(kind: "ka", limit: 10, visibility: .seconds(30)) }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claims.map(\.id) == [id], "one drainer took it")
        let item = try #require(claims.first)
        #expect(try item.decodeItem(KeyRange.self) == KeyRange(from: 500, to: 1000))
        #expect(try await table.failed(item, error: "still down") == false)
        #expect(try await db.scalar("SELECT attempts FROM prewarm_retry WHERE id = $1", [id]) == 1)
        try await table.succeeded(id)
        #expect(try await db.scalar("SELECT count(*) FROM prewarm_retry") == 0)
    }

    @Test(
        "the drainer writes due items back; one out of attempts is kept as exhausted and alerted",
        arguments: RedisTopology.allCases)
    func drainer(on topology: RedisTopology) async throws {
        let db = try await RuntimeDatabase.make()
        let redis = try await topology.connect()
        let table = RetryTable(pool: db.pool, backoff: Backoff(initial: .milliseconds(50), maximum: .milliseconds(100)))
        let marker = TestEnvironment.uniqueName("range")
        let good = try await table.add(kind: marker, taskID: nil, item: KeyRange(from: 0, to: 500), error: "down")
        let bad = try await table.add(
            kind: marker, taskID: nil, item: KeyRange(from: 500, to: 1000), error: "down", maxAttempts: 3)
        let tried = Collected<Int64>()
        let drainer = RetryDrainer(
            kind: marker, table: table, pollEvery: .milliseconds(50), logger: Logger(label: "test"),
            alerts: Alerts(
                worker: "t", logger: Logger(label: "t"), metricsFactory: NOOPMetricsHandler.instance, redis: redis)
        ) { item in
            tried.append(item.id)
            if try item.decodeItem(KeyRange.self).from == 500 { throw UsageError("this range cannot be written") }
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [drainer], logger: Logger(label: "t")))
        let running = Task { try await group.run() }
        try await eventually("the good item written and the bad one exhausted") {
            let written = try await db.scalar("SELECT count(*) FROM prewarm_retry WHERE id = $1", [good]) == 0
            let exhausted = try await db.scalar(
                "SELECT count(*) FROM prewarm_retry WHERE id = $1 AND state = 'exhausted'", [bad])
            return written && exhausted == 1
        }
        #expect(tried.all.filter { $0 == bad }.count == 3)
        try await eventually("the exhausted item to be alerted") {
            try await Alerts.recent(redis, count: 50).contains {
                $0.kind == "retry-exhausted" && $0.message.contains(marker)
            }
        }
        #expect(try await table.depth().contains { $0.kind == marker && $0.state == .exhausted && $0.count == 1 })
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

@Suite("A fan-out's batch plan")
struct BatchPlanTests {
    /// The batches a plan makes of `items`: their sizes, in order.
    private func sizes(_ plan: BatchPlan, items: Int) -> [Int] {
        var left = items
        var sizes: [Int] = []
        while left > 0 {
            let size = min(plan.limit(batch: sizes.count), left)
            sizes.append(size)
            left -= size
        }
        return sizes
    }

    @Test("with a batch per partition or more, a multiple of the partitions, sizes within one, never over the size")
    func evenPlans() {
        // 40,000 users in batches of 500 over 12 partitions: 84 batches (7 a partition).
        let plan = BatchPlan(items: 40_000, batchSize: 500, partitions: 12)
        #expect(plan.batches == 84 && sizes(plan, items: 40_000).count == 84)
        #expect(Set(sizes(plan, items: 40_000)) == [476, 477])
        // Counts the old rounding of one size for all missed: 9,801 over 2, 250,001 over 2.
        for (items, batchSize, partitions) in [
            (9_801, 100, 2), (250_001, 100, 2), (100_000, 500, 12), (1_234_567, 500, 12), (1_000, 40, 3), (37, 10, 3),
        ] {
            let plan = BatchPlan(items: items, batchSize: batchSize, partitions: partitions)
            let made = sizes(plan, items: items)
            #expect(made.count % partitions == 0, "\(items) items over \(partitions): \(made.count) batches")
            #expect(made.max()! <= batchSize && made.max()! - made.min()! <= 1, "\(items) items: sizes within one")
            #expect(made.reduce(0, +) == items)
        }
        // Items added after the count go after the planned batches, at the batch size.
        #expect(plan.limit(batch: 84) == 500)
    }

    @Test("fewer batches than partitions, a multiple already, one partition or no count: the batch size")
    func plainPlans() {
        for plan in [
            BatchPlan(items: 13, batchSize: 5, partitions: 12), BatchPlan(items: 600, batchSize: 2, partitions: 12),
            BatchPlan(items: 1_000, batchSize: 40, partitions: 1), BatchPlan(items: nil, batchSize: 40, partitions: 3),
        ] {
            #expect(
                plan.batches == nil && plan.limit(batch: 0) == plan.batchSize && plan.limit(batch: 7) == plan.batchSize)
        }
    }
}
