import BlockingIO
import BookRecPush
import DevBroker
import DownstreamSimulation
import EntryIngest
import Foundation
import KAPrewarm
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmFixtures
import PrewarmRuntime
import Redis

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// One run of a scenario: fresh stores and broker, the fleet started, the five phases worked
/// with the fault landing where the scenario says, then the recount.
final class Chaos {
    static let redisDatabase = 8
    static let shops: [(id: Int64, users: Int)] = [(9101, 20_000), (9102, 6000), (9103, 2000)]
    static let readers = 3000

    let base: [String: String]
    let broker: ChaosBroker
    let scenario: ChaosScenario
    let seed: UInt64
    let logs: String
    let timeZone: TimeZone
    let schema: String
    let services: String
    var random: SplitMix64
    var ledger = ChaosLedger()
    var faults: [String] = []
    let fleet: ChaosFleet
    var database: PostgresConnection?
    var redis: (any RedisClient & Closable)?
    var bootstrap = ""
    let simulator: DownstreamSimulator
    let simulatorPort: Int
    var simulatorTask: Task<Void, any Error>?
    var applied = false
    var later: [(at: ContinuousClock.Instant, what: String, action: () async throws -> Void)] = []
    let logger = Logger(label: "prewarmctl.chaos")

    init(
        environment: [String: String], broker: ChaosBroker, scenario: ChaosScenario, seed: UInt64,
        logDirectory: String
    ) throws {
        base = environment
        self.broker = broker
        self.scenario = scenario
        self.seed = seed
        logs = "\(logDirectory)/\(scenario.name)-\(seed)"
        timeZone = try EnvironmentReader(environment).timeZone()
        schema = "chaos_\(seed)_\(UInt32.random(in: 0...UInt32.max))"
        services =
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            .appendingPathComponent("scripts/services.sh").path
        random = SplitMix64(seed: seed)
        var behaviour = DownstreamSimulator.Behaviour()
        behaviour.latency = "20ms"
        behaviour.experimentShare = 0.8
        simulator = DownstreamSimulator(behaviour)
        simulatorPort = try FreePort.next()
        fleet = ChaosFleet(
            binaries: URL(fileURLWithPath: try Self.executable()).deletingLastPathComponent(),
            environment: [:], logDirectory: logs, token: UUID().uuidString)
        fleet.environment = try podEnvironment(simulatorPort: simulatorPort)
    }

    /// The run's own schema.
    var db: PostgresConnection {
        get throws {
            guard let database else { throw ChaosFailure("not connected to PostgreSQL") }
            return database
        }
    }

    /// The run's Redis database (or the cluster).
    var cache: any RedisClient {
        get throws {
            guard let redis else { throw ChaosFailure("not connected to Redis") }
            return redis
        }
    }

    func run() async -> ChaosVerdict {
        let started = ContinuousClock.now
        var differences: [String] = []
        var counts = (items: 0, lost: 0, duplicated: 0)
        do {
            try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
            try await setUp()
            try await work()
            var recount = ChaosRecount(chaos: self)
            recount = try await recount.run()
            differences = recount.differences
            counts = (recount.items, recount.lost, recount.duplicated)
            differences += fleet.unexpectedExits
            if case .badInput = scenario.fault {
                differences += await ChaosMetricsCheck(
                    files: ChaosMetricsCheck.files(near: fleet.binaries), ports: fleet.pods.map(\.port)
                ).differences()
            }
        } catch {
            differences.append("the run stopped: \(error)")
        }
        await tearDown(keep: !differences.isEmpty)
        return ChaosVerdict(
            scenario: scenario.name, broker: broker, seed: seed, faults: faults.isEmpty ? ["none"] : faults,
            items: counts.items, lost: counts.lost, duplicated: counts.duplicated,
            seconds: (ContinuousClock.now - started).seconds, differences: differences, logs: logs)
    }

    // MARK: - Set-up

    func setUp() async throws {
        try await service("stop", "kafka")
        try await service("start", "kafka")
        bootstrap = try String(contentsOfFile: base["PREWARM_KAFKA_BOOTSTRAP_FILE"] ?? "", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try await connectDatabase()
        var configuration = try EnvironmentReader(base).redis(clientName: "prewarmctl-chaos")
        if scenario.fault.onCluster {
            // A cluster of the run's own, fresh: its nodes are killed and its slots moved.
            try await service("stop", "redis-cluster")
            try await service("start", "redis-cluster")
            configuration.commandTimeout = 2
            redis = ChaosRedis(
                try await RedisClusterClient.connect(seeds: clusterNodes, configuration: configuration), logger: logger)
        } else {
            configuration.database = Self.redisDatabase
            redis = try await RedisConnection.connect(configuration)
            try await cache.send("FLUSHDB")
        }
        try await writeData()
        let simulator = simulator
        let port = simulatorPort
        simulatorTask = Task { try await simulator.serve(host: "127.0.0.1", port: port, logger: Logger(label: "sim")) }
        try await Task.sleep(for: .milliseconds(200))
        try await fleet.start([
            .entryIngest: 2, .storeScorer: 2, .recommendAPI: 2, .kaPrewarmer: 2, .pushProducer: 2,
        ])
    }

    static func executable() throws -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// A connection into the run's own schema (again after PostgreSQL restarted).
    func connectDatabase() async throws {
        let admin = try await PostgresConnection.connect(
            try EnvironmentReader(base).postgres(applicationName: "prewarmctl-chaos"))
        try await admin.query("CREATE SCHEMA IF NOT EXISTS \(schema)")
        await admin.close()
        await database?.close()
        database = try await PostgresConnection.connect(schemaConfiguration)
    }

    var schemaConfiguration: PostgresConfiguration {
        get throws {
            var configuration = try EnvironmentReader(base).postgres(applicationName: "prewarmctl-chaos")
            configuration.conninfo += " options='-c search_path=\(schema)'"
            return configuration
        }
    }

    /// The settings of every pod: the run's schema and Redis database, short leases and
    /// sessions (so faults resolve in seconds), small batches (so faults land mid-work), the
    /// simulator, and schedules whose catch-up runs touch nothing of the run's.
    func podEnvironment(simulatorPort: Int) throws -> [String: String] {
        var variables = base
        variables["PREWARM_POSTGRES_URL"] = try schemaConfiguration.conninfo
        if scenario.fault.onCluster {
            variables["PREWARM_REDIS_CLUSTER_NODES"] = clusterNodes.map { "\($0.host):\($0.port)" }.joined(
                separator: ",")
            variables["PREWARM_REDIS_DB"] = "0"
        } else {
            variables["PREWARM_REDIS_DB"] = String(Self.redisDatabase)
        }
        variables["PREWARM_LOG_LEVEL"] = base["PREWARM_CHAOS_POD_LOG_LEVEL"] ?? "info"
        let simulator = "http://127.0.0.1:\(simulatorPort)"
        for (name, value) in [
            ("PREWARM_JOB_LEASE_S", "3"), ("PREWARM_JOB_CHECK_S", "1"), ("PREWARM_TASK_HEARTBEAT_S", "1"),
            ("PREWARM_TASK_STALE_AFTER_S", "3"), ("PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS", "6000"),
            ("PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS", "500"), ("PREWARM_BATCH_MAX_MESSAGES", "500"),
            ("PREWARM_SHUTDOWN_TIMEOUT_S", "10"), ("PREWARM_RETRY_MAX_MS", "2000"),
            ("PREWARM_SCORE_BATCH_SIZE", "5"), ("PREWARM_KA_MIN_USERS", "100"), ("PREWARM_KA_BATCH_SIZE", "200"),
            ("PREWARM_KA_LEASE_S", "3"), ("PREWARM_KA_VERIFY_RATIO", "1"), ("PREWARM_KA_SAFETY_MARGIN_S", "0"),
            ("PREWARM_KA_MAX_DB_ROWS_PER_S", "5000"), ("PREWARM_PUSH_BATCH_SIZE", "50"),
            ("PREWARM_PUSH_MAX_IN_FLIGHT", "10"), ("PREWARM_PUSH_AB_URL", simulator + "/ab"),
            ("PREWARM_PUSH_REC_URL", simulator + "/rec"), ("PREWARM_PUSH_MATERIAL_URL", simulator + "/material"),
            ("PREWARM_PUSH_BREAKER_OPEN_MS", "500"), ("PREWARM_RECOMMEND_REBUILD_WAIT_MS", "2000"),
            ("PREWARM_ACTIVITY_CHECK_S", "2"), ("PREWARM_KA_CACHE_CHECK_S", "2"),
        ] {
            variables[name] = value
        }
        if scenario.fault.losesRedisWrites {
            // Leases that outlast the failover (a 5 s node time-out, then the promotion), as
            // production's 30 s do: a lease shorter than the outage is lost with it, and a batch
            // given up between its pushes and their marks sends them again (same ids).
            variables["PREWARM_JOB_LEASE_S"] = "15"
        }
        if case .requestErrors = scenario.fault {
            // librdkafka 2.0.2's mock checks produce sequences only for transactional
            // producers: with a request failed by an injected error and the next one (in
            // flight beside it) appended, the client takes the later ack as proof the first
            // was written too (as a real broker, which refuses a gap, would imply) and
            // reports it delivered. One request in flight keeps the mock honest; real brokers
            // need no such setting.
            variables["PREWARM_KAFKA_PRODUCER_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION"] = "1"
        }
        return variables
    }

    /// Stores, three key-account shops, the day's book-rec targets (pushed two hours from now).
    func writeData() async throws {
        _ = try await Migrator.migrate(db, AllMigrations.list, logger: logger)
        try await db.query(
            """
            INSERT INTO stores (store_id, name, category_id, zone_id)
            SELECT g, 'stall ' || g, g % 7, g % 5 FROM generate_series(1, 100) g
            """)
        for shop in Self.shops {
            try await db.query("INSERT INTO ka_shops (shop_id, name) VALUES ($1, $2)", [shop.id, "shop \(shop.id)"])
            try await db.query(
                """
                INSERT INTO ka_staff (staff_id, shop_id, name, role)
                SELECT $1::bigint * 1000 + s, $1::bigint, 'host ' || s, 'host' FROM generate_series(1, 20) s
                """, [shop.id])
            try await db.query(
                """
                INSERT INTO ka_products (product_id, shop_id, name, price_cents, stock)
                SELECT $1::bigint * 100000 + p, $1::bigint, 'item ' || p, 100 + p, p FROM generate_series(1, 50) p
                """, [shop.id])
            try await db.query(
                """
                INSERT INTO ka_shop_users (shop_id, user_id, nickname, level, points, tags)
                SELECT $1::bigint, u, 'fan-' || u, u % 7, u, 'live' FROM generate_series(1, $2::bigint) u
                """, [shop.id, shop.users])
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let later = Date().addingTimeInterval(2 * 3600)
        let parts = calendar.dateComponents([.year, .month, .day, .hour], from: later)
        ledger.day = String(format: "%04d%02d%02d", parts.year!, parts.month!, parts.day!)
        ledger.slot = ledger.day + String(format: "%02d", parts.hour!)
        let tasks = BookRecOptions().tasks(day: ledger.day)
        try await db.query(
            """
            INSERT INTO task_data (task_id, source_uid, project, push_hour, payload)
            SELECT $1, 600000 + u, 'novel', $3::smallint, '{"series": ' || (u % 50) || '}'
            FROM generate_series(1, $4::bigint) u
            UNION ALL
            SELECT $2, 600000 + u, 'novel', $3::smallint, '{"series": ' || (u % 50) || '}'
            FROM generate_series($4::bigint - 999, $4::bigint + 500) u
            """, [tasks[0], tasks[1], parts.hour!, Self.readers])
    }

    func tearDown(keep: Bool) async {
        await fleet.stopAll()
        simulatorTask?.cancel()
        _ = await simulatorTask?.result
        await redis?.close()
        if scenario.fault.onCluster { try? await service("stop", "redis-cluster") }
        if !keep { _ = try? await database?.query("DROP SCHEMA \(schema) CASCADE") }
        await database?.close()
        if !keep { try? FileManager.default.removeItem(atPath: logs) }
    }

    /// The local cluster's nodes (`scripts/services.sh start redis-cluster`: six ports from
    /// `PREWARM_DEV_REDIS_CLUSTER_PORT`, 17001, or those of `PREWARM_DEV_REDIS_CLUSTER_PORTS`).
    var clusterNodes: [RedisSlotMap.Node] {
        let listed = (base["PREWARM_DEV_REDIS_CLUSTER_PORTS"] ?? "").split(separator: " ").compactMap { Int($0) }
        let first = Int(base["PREWARM_DEV_REDIS_CLUSTER_PORT"] ?? "") ?? 17001
        return (listed.isEmpty ? Array(first..<(first + 6)) : listed).map {
            RedisSlotMap.Node(host: "127.0.0.1", port: $0)
        }
    }

    /// `scripts/services.sh ACTION SERVICE` with the run's environment (its broker kind).
    func service(_ action: String, _ name: String, extra: [String: String] = [:]) async throws {
        let child = try ChildProcess.spawn(
            services, [action, name], environment: base.merging(extra) { $1 }, standardOutput: logs + "/services.log",
            standardError: logs + "/services.log")
        let status = try await child.wait(timeout: .seconds(120))
        guard status == 0 else { throw ChaosFailure("services.sh \(action) \(name) exited with \(status)") }
    }

}
