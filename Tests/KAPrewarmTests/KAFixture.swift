import Foundation
import KAPrewarm
import Logging
import Metrics
import Postgres
import PrewarmRuntime
import Redis
import TestSupport

/// A schema of the test's own with the runtime's and ka-prewarmer's tables.
struct KADatabase {
    let schema: TestSchema
    var pool: PostgresPool { schema.pool }

    static func make(server: PostgresConfiguration? = nil) async throws -> KADatabase {
        KADatabase(
            schema: try await TestSchema.make("ka", server: server) { pool in
                _ = try await pool.withConnection {
                    try await Migrator.migrate(
                        $0, RuntimeSchema.migrations + KASchema.migrations, logger: Logger(label: "test"))
                }
            })
    }

    func execute(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws {
        try await pool.withConnection { _ = try await $0.query(sql, parameters) }
    }

    func scalar(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> Int {
        try await pool.withConnection { try await $0.query(sql, parameters).first?[0].int ?? 0 }
    }

    /// A shop with users 1...`users`, 3 staff, 5 products and 2 marketing items.
    func addShop(_ shop: Int64, users: Int) async throws {
        try await execute(
            "INSERT INTO ka_shops (shop_id, name, info) VALUES ($1, $2, '{\"city\": \"Hangzhou\"}')",
            [shop, "shop \(shop)"])
        try await execute(
            """
            INSERT INTO ka_staff (staff_id, shop_id, name, role)
            SELECT $1::bigint * 1000 + s, $1, 'staff ' || s, CASE WHEN s = 1 THEN 'host' ELSE 'assistant' END
            FROM generate_series(1, 3) s
            """, [shop])
        try await execute(
            """
            INSERT INTO ka_products (product_id, shop_id, name, price_cents, stock)
            SELECT $1::bigint * 1000 + p, $1, 'product ' || p, 100 * p, 10 FROM generate_series(1, 5) p
            """, [shop])
        try await execute(
            """
            INSERT INTO ka_marketing (marketing_id, shop_id, kind, title)
            VALUES ($1::bigint * 1000 + 1, $1, 'campaign', 'live special'), ($1::bigint * 1000 + 2, $1, 'coupon', '10 off 100')
            """, [shop])
        try await execute(
            """
            INSERT INTO ka_shop_users (shop_id, user_id, nickname, level, points, tags)
            SELECT $1::bigint, u, 'fan ' || u, u % 5, u * 10, 'early-bird' FROM generate_series(1, $2::bigint) u
            """, [shop, users])
    }

    /// The environment that points a worker process at this schema.
    var workerEnvironment: [String: String] {
        ["PREWARM_POSTGRES_URL": schema.configuration.conninfo]
    }
}

/// A reservation of `live` for `shop`, the stream starting in `startsIn` and lasting an hour.
func reservation(
    live: Int64, shop: Int64, startsIn: TimeInterval = 3600, force: Bool = false
) -> Reservation {
    // Whole seconds, as the JSON of a reservation carries them.
    let starts = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + startsIn).rounded())
    return Reservation(
        reservationID: "r-\(live)", liveID: live, shopID: shop, startsAt: starts,
        endsAt: starts.addingTimeInterval(3600), force: force)
}

/// Ids no other test uses: lives and shops share the Redis database.
func uniqueID() -> Int64 { Int64.random(in: 1_000_000...9_000_000_000) }

/// ka-prewarmer's parts in this process, over a schema of the test's own and a Redis key
/// prefix of its own; `startRunner` works the tasks as a pod does until the test ends.
struct KAHarness {
    let db: KADatabase
    let redis: any RedisClient
    let cache: KACache
    let options: KAOptions
    let queue: KAPrewarmQueue
    let task: KAPrewarmTask
    let tasks: TaskQueue
    let retries: RetryTable

    static func make(
        _ options: KAOptions, on topology: RedisTopology = .single, redis: (any RedisClient)? = nil,
        db: KADatabase? = nil,
        settings: TaskSettings = TaskSettings(heartbeat: .seconds(1), staleAfter: .seconds(3))
    ) async throws -> KAHarness {
        let db = if let db { db } else { try await KADatabase.make() }
        let client: any RedisClient
        if let redis {
            client = redis
        } else {
            client = try await topology.connect()
        }
        let cache = KACache(redis: client, prefix: TestEnvironment.uniqueName("ka") + ":")
        let logger = Logger(label: "ka-test")
        let alerts = Alerts(
            worker: "ka-test", logger: logger, metricsFactory: NOOPMetricsHandler.instance, redis: client)
        closeAfterTest { await alerts.close() }
        let tasks = TaskQueue(pool: db.pool, settings: settings)
        let retries = RetryTable(pool: db.pool, backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(1)))
        let queue = KAPrewarmQueue(
            tasks: tasks, source: KASource(pool: db.pool), cache: cache, retries: retries, alerts: alerts,
            options: options, logger: logger)
        let task = KAPrewarmTask(
            options: options, cache: cache, source: KASource(pool: db.pool), retries: retries, alerts: alerts,
            owner: "test-\(UUID().uuidString.prefix(8))", logger: logger, metricsFactory: NOOPMetricsHandler.instance)
        return KAHarness(
            db: db, redis: client, cache: cache, options: options, queue: queue, task: task, tasks: tasks,
            retries: retries)
    }

    /// A task runner and a retry drainer, as in a pod, until the test ends.
    func startRunner() {
        let logger = Logger(label: "ka-test")
        let runner = TaskRunner(
            kind: KAPrewarmTask.kind, queue: tasks, handler: task, concurrency: options.tasksPerPod,
            owner: "runner-\(UUID().uuidString.prefix(8))", pollEvery: .milliseconds(100),
            retry: Backoff(initial: .milliseconds(500), maximum: .seconds(2)), logger: logger, alerts: nil)
        let drainer = RetryDrainer(
            kind: KAPrewarmTask.kind, table: retries, pollEvery: .milliseconds(100), logger: logger, alerts: nil
        ) { [task] in try await task.retry($0) }
        let running = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { try? await runner.run() }
                group.addTask { try? await drainer.run() }
            }
        }
        closeAfterTest {
            running.cancel()
            await running.value
        }
    }

    func state(live: Int64) async throws -> TaskRecord? {
        try await tasks.task(kind: KAPrewarmTask.kind, key: String(live))
    }

    func waitForState(_ state: TaskState, live: Int64, timeout: Duration = .seconds(60)) async throws {
        try await eventually(timeout: timeout, "the pre-warm of live \(live) to be \(state)") {
            let record = try await self.state(live: live)
            if let record, record.state == .failed, state != .failed {
                throw PrewarmFailedInTest(reason: record.lastError ?? "")
            }
            return record?.state == state
        }
    }

    /// The user keys of `shop` in Redis.
    func userKeys(shop: Int64) async throws -> [String] {
        try await scan(redis, cache.userKeyPattern(shop: shop))
    }

    /// The alerts of `kind` about `live` in the fleet's recent list.
    func alerts(_ kind: String, live: Int64) async throws -> [Alert] {
        try await Alerts.recent(redis, count: Alerts.recentKept).filter {
            $0.kind == kind && $0.details["live"] == String(live)
        }
    }
}

struct PrewarmFailedInTest: Error, CustomStringConvertible {
    let reason: String
    var description: String { "the pre-warm failed: \(reason)" }
}

/// Every key matching `pattern`.
func scan(_ redis: any RedisClient, _ pattern: String) async throws -> [String] {
    try await redis.keys(matching: pattern)
}

extension KAOptions {
    /// Small batches, short leases, every key verified: what the tests run with.
    static func testing(
        batchSize: Int = 50, minUsers: Int = 10, maxWriters: Int = 2, rowsPerSecond: Int = 0, verifyRatio: Double = 1
    ) -> KAOptions {
        var options = KAOptions()
        options.batchSize = batchSize
        options.minUsers = minUsers
        options.lease = .seconds(3)
        options.minWriters = 1
        options.maxWriters = maxWriters
        options.maxDatabaseRowsPerSecond = rowsPerSecond
        options.verifyRatio = verifyRatio
        options.retryAttempts = 20
        options.safetyMargin = .zero
        return options
    }
}
