import BookRecPush
import DownstreamSimulation
import Foundation
import Kafka
import Logging
import Metrics
import MetricsTestKit
import Postgres
import PrewarmRuntime
import Redis
import TestSupport

/// A schema of the test's own with the runtime's and push-producer's tables.
struct PushDatabase {
    let schema: TestSchema
    var pool: PostgresPool { schema.pool }

    static func make() async throws -> PushDatabase {
        PushDatabase(
            schema: try await TestSchema.make("push") { pool in
                _ = try await pool.withConnection {
                    try await Migrator.migrate(
                        $0, RuntimeSchema.migrations + BookRecPushSchema.migrations, logger: Logger(label: "test"))
                }
            })
    }

    func execute(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws {
        try await pool.withConnection { _ = try await $0.query(sql, parameters) }
    }

    func scalar(_ sql: String, _ parameters: [(any PostgresEncodable)?] = []) async throws -> Int {
        try await pool.withConnection { try await $0.query(sql, parameters).first?[0].int ?? 0 }
    }

    /// Users `users` in `task`, pushed at `hour`, project "novel", payload naming the series.
    func addUsers(_ users: ClosedRange<Int64>, task: String, hour: Int) async throws {
        try await execute(
            """
            INSERT INTO task_data (task_id, source_uid, project, push_hour, payload)
            SELECT $1, u, 'novel', $2, '{"series_id": ' || (u % 40) || '}' FROM generate_series($3::bigint, $4::bigint) u
            """, [task, hour, users.lowerBound, users.upperBound])
    }

    /// Ids of the rows of `task` at `hour`, by id.
    func rowIDs(task: String, hour: Int) async throws -> [Int64] {
        try await pool.withConnection {
            try await $0.query(
                "SELECT id FROM task_data WHERE task_id = $1 AND push_hour = $2 ORDER BY id", [task, hour])
        }.rows.compactMap { $0[0].int64 }
    }

    var workerEnvironment: [String: String] { ["PREWARM_POSTGRES_URL": schema.configuration.conninfo] }
}

/// Everything a job test needs: the database, Redis under a prefix of the test's own, the
/// simulator, a push topic of its own and the jobs.
struct PushFixture {
    let db: PushDatabase
    let redis: any RedisClient & Closable
    let cache: BookRecCache
    let services: SimulatedServices
    let jobs: BookRecJobs
    let topic: String
    let alerts: Alerts
    let options: BookRecOptions
    let metrics: TestMetrics

    /// A day of the test's own: alerts name it, and they share the fleet's alert list.
    let day = String(
        format: "%04d%02d%02d", Int.random(in: 2100...2999), Int.random(in: 1...12), Int.random(in: 1...28))
    var finished: String { "04-026-\(day)-r0gdua" }
    var following: String { "04-026-\(day)-qk79ub" }
    func slot(_ hour: Int) -> String { day + String(format: "%02d", hour) }

    static func make(
        on topology: RedisTopology = .single,
        behaviour: DownstreamSimulator.Behaviour = DownstreamSimulator.Behaviour(),
        configure: (inout BookRecOptions) -> Void = { _ in }
    ) async throws -> PushFixture {
        let db = try await PushDatabase.make()
        let redis = try await topology.connect()
        let services = try await SimulatedServices.start(behaviour)
        var options = BookRecOptions()
        options.services = .init(simulator: services.base)
        options.breakerCoolDown = .milliseconds(300)
        configure(&options)
        // Time-outs a loaded CI machine does not reach: a call that times out here would open a
        // circuit that a test means to keep closed.
        let metrics = TestMetrics()
        let http = DownstreamClient(
            connectTimeout: .seconds(5), callTimeout: .seconds(5), maxConnectionsPerHost: 64, metricsFactory: metrics)
        closeAfterTest { await http.shutdown() }
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        closeAfterTest { await producer.close() }
        let topic = try await TestEnvironment.createTopic("push.book-rec", partitions: 3)
        let prefix = TestEnvironment.uniqueName("push") + ":"
        let cache = BookRecCache(redis: redis, prefix: prefix)
        let alerts = Alerts(
            worker: "push-test", logger: Logger(label: "test"), metricsFactory: NOOPMetricsHandler.instance,
            redis: redis)
        closeAfterTest { await alerts.close() }
        let jobs = BookRecJobs(
            options: options, data: TaskData(pool: db.pool, options: options), cache: cache,
            services: BookRecServices(
                options: options, http: http, logger: Logger(label: "test"), metricsFactory: metrics),
            producer: producer, alerts: alerts, logger: Logger(label: "test"), pushTopic: topic, metricsFactory: metrics
        )
        return PushFixture(
            db: db, redis: redis, cache: cache, services: services, jobs: jobs, topic: topic, alerts: alerts,
            options: options, metrics: metrics)
    }

    func batch(_ job: String, _ period: String, _ ids: [Int64], index: Int = 0, attempt: Int = 1) -> JobBatch {
        JobBatch(job: job, period: period, attempt: attempt, batch: index, batchCount: nil, ids: ids)
    }

    func progress(_ job: String, _ period: String, attempt: Int = 1) -> JobRunProgress {
        JobRunProgress(job: job, period: period, attempt: attempt, state: .succeeded)
    }

    /// Pre-warms the day's users in batches of `size`, then runs the run's end.
    func prewarm(_ users: [Int64], size: Int = 500) async throws {
        for (index, start) in stride(from: 0, to: users.count, by: size).enumerated() {
            _ = try await jobs.work(
                batch(BookRecJobs.prewarmJob, day, Array(users[start..<min(start + size, users.count)]), index: index))
        }
        try await jobs.finishPrewarm(progress(BookRecJobs.prewarmJob, day))
    }

    /// The calls to `service` the client counted with `outcome` (all outcomes: nil).
    func downstreamCalls(_ service: String, outcome: String? = nil) -> Int {
        Int(
            metrics.counters(label: "prewarm_downstream_calls_total").filter { counter in
                counter.dimensions.contains { $0 == ("service", service) }
                    && (outcome.map { outcome in counter.dimensions.contains { $0 == ("outcome", outcome) } } ?? true)
            }.map(\.totalValue).reduce(0, +))
    }

    func counts(_ job: String, _ period: String) async throws -> [String: Int] {
        try await cache.counts(job: job, period: period, attempt: 1)
    }

    /// This test's alerts of `kind` (they name its day or slot), once delivered.
    func alerts(kind: String) async throws -> [Alert] {
        try await Alerts.recent(redis, count: 200).filter {
            $0.kind == kind && ($0.details["period"] ?? $0.details["slot"] ?? "").hasPrefix(day)
        }
    }
}

extension BookRecJobs {
    /// Each job's batch handler, as its declaration names it.
    var declaredHandlers: [String: any JobBatchHandler] {
        Dictionary(
            uniqueKeysWithValues: scheduled().compactMap { job in
                if case .fanOut(let fanOut) = job.work { (job.name, fanOut.handler) } else { nil }
            })
    }

    /// A batch worked as the runtime routes it: by its job, to the handler its declaration names.
    func work(_ batch: JobBatch) async throws -> BatchResult {
        guard let handler = declaredHandlers[batch.job] else {
            throw InvalidMessage("no job '\(batch.job)' declared", errorClass: "UnknownJob")
        }
        return try await handler.work(batch)
    }
}
