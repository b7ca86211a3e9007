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

    @Test("the drainer writes due items back; one out of attempts is kept as exhausted and alerted")
    func drainer() async throws {
        let db = try await RuntimeDatabase.make()
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        closeAfterTest { await redis.close() }
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
        #expect(try await table.depth().contains { $0.kind == marker && $0.state == "exhausted" && $0.count == 1 })
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

@Suite("A fan-out's batch size")
struct EvenBatchSizeTests {
    @Test("batches as even over the partitions as the batch size allows; the size never grows")
    func evenBatchSize() {
        // 40,000 users in batches of 500 over 12 partitions: 84 batches of 477, 7 a partition.
        #expect(FanOut.evenBatchSize(items: 40_000, batchSize: 500, partitions: 12) == 477)
        #expect((40_000 + 476) / 477 == 84)
        // 100,000: 204 batches of 491 rather than 200 of 500.
        #expect(FanOut.evenBatchSize(items: 100_000, batchSize: 500, partitions: 12) == 491)
        // Already a multiple of the partitions, fewer batches than partitions, one partition,
        // an unknown count: the batch size as set.
        #expect(FanOut.evenBatchSize(items: 600, batchSize: 2, partitions: 12) == 2)
        #expect(FanOut.evenBatchSize(items: 13, batchSize: 5, partitions: 12) == 5)
        #expect(FanOut.evenBatchSize(items: 1_000, batchSize: 40, partitions: 1) == 40)
        #expect(FanOut.evenBatchSize(items: nil, batchSize: 40, partitions: 3) == 40)
        for items in [1, 37, 999, 12_345, 250_001] {
            for partitions in [2, 3, 12] {
                let size = FanOut.evenBatchSize(items: items, batchSize: 100, partitions: partitions)
                let batches = (items + size - 1) / size
                #expect(size <= 100 && size >= 1)
                #expect(
                    batches < partitions || batches % partitions == 0 || size == 100 || size == 1,
                    "\(items) items over \(partitions) partitions: \(batches) batches of \(size)")
            }
        }
    }
}
