import BlockingIO
import BookRecPush
import DevBroker
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

/// What one chaos run found, as `make chaos` prints it: one line, and the recount's
/// differences when it failed.
struct ChaosVerdict {
    let scenario: String
    let broker: ChaosBroker
    let seed: UInt64
    let faults: [String]
    let items: Int
    let lost: Int
    let duplicated: Int
    let seconds: Double
    let differences: [String]
    let logs: String

    var passed: Bool { differences.isEmpty }

    var line: String {
        "\(scenario)  broker=\(broker.rawValue)  seed=\(seed)  faults=[\(faults.joined(separator: "; "))]  "
            + "items=\(items)  lost=\(lost)  duplicated=\(duplicated)  time=\(String(format: "%.1f", seconds))s  "
            + (passed ? "PASS" : "FAIL (\(differences.count) differences)")
    }
}

/// What a run produced, to recount against.
struct ChaosLedger {
    var goodEvents: Set<String> = []
    /// Bad inputs placed on each consumed topic, by where they landed.
    var bad: [String: [KafkaDeliveryReport]] = [:]
    var reservations: [Reservation] = []
    var day = ""
    var slot = ""
    var scoringAttempt = 0
    var prewarmAttempt = 0
    var pushAttempt = 0
}

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
    private var database: PostgresConnection?
    private var redis: RedisConnection?
    var bootstrap = ""
    let simulator: DownstreamSimulator
    let simulatorPort: Int
    private var simulatorTask: Task<Void, any Error>?
    private var applied = false
    private var later: [(at: ContinuousClock.Instant, what: String, action: () async throws -> Void)] = []
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

    /// The run's Redis database.
    var cache: RedisConnection {
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

    private func setUp() async throws {
        try await service("stop", "kafka")
        try await service("start", "kafka")
        bootstrap = try String(contentsOfFile: base["PREWARM_KAFKA_BOOTSTRAP_FILE"] ?? "", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try await connectDatabase()
        var configuration = try EnvironmentReader(base).redis(clientName: "prewarmctl-chaos")
        configuration.database = Self.redisDatabase
        redis = try await RedisConnection.connect(configuration)
        try await cache.send("FLUSHDB")
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
    private func podEnvironment(simulatorPort: Int) throws -> [String: String] {
        var variables = base
        variables["PREWARM_POSTGRES_URL"] = try schemaConfiguration.conninfo
        variables["PREWARM_REDIS_DB"] = String(Self.redisDatabase)
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
        return variables
    }

    /// Stores, three key-account shops, the day's book-rec targets (pushed two hours from now).
    private func writeData() async throws {
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

    private func tearDown(keep: Bool) async {
        await fleet.stopAll()
        simulatorTask?.cancel()
        _ = await simulatorTask?.result
        await redis?.close()
        if !keep { _ = try? await database?.query("DROP SCHEMA \(schema) CASCADE") }
        await database?.close()
        if !keep { try? FileManager.default.removeItem(atPath: logs) }
    }

    /// `scripts/services.sh ACTION SERVICE` with the run's environment (its broker kind).
    func service(_ action: String, _ name: String, extra: [String: String] = [:]) async throws {
        let child = try ChildProcess.spawn(
            services, [action, name], environment: base.merging(extra) { $1 }, standardOutput: logs + "/services.log",
            standardError: logs + "/services.log")
        let status = try await child.wait(timeout: .seconds(120))
        guard status == 0 else { throw ChaosFailure("services.sh \(action) \(name) exited with \(status)") }
    }

    // MARK: - The work

    private func work() async throws {
        if case .badInput = scenario.fault { try await produceBadInputEverywhere() }
        try await ingest()
        try await score()
        try await prewarmKA()
        try await prewarmBooks()
        try await push()
        try await settle()
        if case .replay = scenario.fault { try await replay() }
    }

    private func ingest() async throws {
        var generator = StoreEntryGenerator(seed: seed, timeZone: timeZone)
        let events = generator.events(count: 20_000, now: Date(), users: 1500, stores: 100)
        ledger.goodEvents = Set(events.map { $0.eventID.uuidString.lowercased() })
        let bad = StoreEntryGenerator.badMessages(now: Date()).map {
            ExtremeInputs.Input("bad \($0.errorClass)", key: $0.key, json: $0.json)
        }
        let topic = TopicCatalog.storeEntry.name
        let good = events.map { ExtremeInputs.Input("event", key: $0.message.key, json: $0.message.json) }
        var inputs = good
        for (index, input) in bad.enumerated() { inputs.insert(input, at: (index + 1) * 3000) }
        let reports = try await ExtremeInputs.produce(inputs, to: topic, bootstrap: bootstrap)
        ledger.bad[topic, default: []] += zip(inputs, reports).filter { $0.0.name.hasPrefix("bad") }.map(\.1)
        let total = Double(events.count)
        try await phase(.ingest) {
            Double(try await self.storedEvents()) / total
        } done: {
            try await self.storedEvents() >= events.count
        }
    }

    func storedEvents() async throws -> Int {
        try await db.query("SELECT count(*) FROM (\(EntryIngestSchema.allShards("event_id"))) s").first?[0].int ?? 0
    }

    private func score() async throws {
        ledger.scoringAttempt = try await runJob("store-score", period: String(ledger.day.prefix(8)), phase: .scoring)
    }

    private func prewarmBooks() async throws {
        ledger.prewarmAttempt = try await runJob(BookRecJobs.prewarmJob, period: ledger.day, phase: .prewarm)
    }

    private func push() async throws {
        ledger.pushAttempt = try await runJob(BookRecJobs.pushJob, period: ledger.slot, phase: .push)
    }

    /// A forced run of the job (after any run of the period the pods started by themselves),
    /// watched until its outcome is settled; returns the attempt.
    private func runJob(_ job: String, period: String, phase: ChaosPhase) async throws -> Int {
        let runs = JobRuns(
            redis: try cache, settings: JobRunSettings(), owner: "chaos", logger: logger, alerts: nil)
        try await waitUntil("a run of \(job) \(period) the pods started by themselves", timeout: .seconds(120)) {
            guard let run = try await runs.progress(job: job, period: period) else { return true }
            return run.isFinished && !run.owesFinishStep
        }
        let worker: ChaosWorker = job == "store-score" ? .storeScorer : .pushProducer
        let pod = try pod(of: worker)
        let (status, body) = try await adminPost(pod, "/jobs/\(job)/trigger?period=\(period)&force=true")
        guard status == 202, let attempt = Self.attempt(in: body) else {
            throw ChaosFailure("trigger of \(job) \(period) answered \(status): \(body)")
        }
        try await self.phase(phase) {
            guard let run = try await runs.progress(job: job, period: period), run.attempt == attempt else { return 0 }
            let total = Double(run.itemsExpected ?? run.itemsProduced)
            return total > 0 ? Double(run.itemsDone + run.itemsFailed) / total : 0
        } done: {
            guard let run = try await runs.progress(job: job, period: period) else { return false }
            return run.attempt > attempt || (run.attempt == attempt && run.isFinished && !run.owesFinishStep)
        }
        return attempt
    }

    static func attempt(in body: String) -> Int? {
        guard let range = body.range(of: #""attempt":"#) else { return nil }
        return Int(body[range.upperBound...].prefix { $0.isNumber })
    }

    private func prewarmKA() async throws {
        let starts = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3600).rounded())
        ledger.reservations = Self.shops.enumerated().map { index, shop in
            Reservation(
                reservationID: "chaos-\(seed)-\(index)", liveID: Int64(seed % 1_000_000) * 10 + Int64(index),
                shopID: shop.id, startsAt: starts, endsAt: starts.addingTimeInterval(3600), force: false)
        }
        let topic = TopicCatalog.liveReservation.name
        var inputs = try ledger.reservations.map { reservation in
            let message = try reservation.message(topic: topic)
            return ExtremeInputs.Input("reservation", key: message.key, value: message.value)
        }
        inputs.insert(
            ExtremeInputs.Input(
                "bad unknown shop", key: "77",
                json: #"{"reservation_id": "x", "live_id": 1, "shop_id": 77, "#
                    + #""starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z"}"#), at: 1)
        let reports = try await ExtremeInputs.produce(inputs, to: topic, bootstrap: bootstrap)
        ledger.bad[topic, default: []] += zip(inputs, reports).filter { $0.0.name.hasPrefix("bad") }.map(\.1)
        let lives = ledger.reservations.map { String($0.liveID) }
        let total = Double(Self.shops.map(\.users).reduce(0, +))
        try await phase(.ka) {
            Double(try await self.kaDone(lives).done) / total
        } done: {
            try await self.kaDone(lives).succeeded == lives.count
        }
    }

    func kaDone(_ lives: [String]) async throws -> (done: Int, succeeded: Int) {
        let row = try await db.query(
            """
            SELECT coalesce(sum(done), 0), count(*) FILTER (WHERE state = 'succeeded')
            FROM prewarm_tasks WHERE kind = 'ka-prewarm' AND key = ANY($1::text[])
            """, [lives.postgresArray]
        ).first
        return (row?[0].int ?? 0, row?[1].int ?? 0)
    }

    /// Every consumer group caught up (committed to the end of its topic), the activity's
    /// marker there (a rebuild after a Redis loss is over), every KA task succeeded (one
    /// queued again after a loss included), and every run of the day settled (one the pods
    /// caught up again after a loss included).
    private func settle() async throws {
        let operations = GroupOperations(bootstrapServers: bootstrap, properties: KafkaProperties(), logger: logger)
        try await waitUntil("every consumer group committed to its end", timeout: .seconds(120)) {
            let lag = try await operations.catalogLag()
            return lag.values.allSatisfy { $0.values.allSatisfy { $0 == 0 } }
        }
        try await waitUntil("the activity's marker", timeout: .seconds(120)) {
            try await self.cache.send("EXISTS", ActivityGuard.epochKey) == .integer(1)
        }
        let lives = ledger.reservations.map { String($0.liveID) }
        try await waitUntil("every KA task succeeded", timeout: .seconds(180)) {
            try await self.kaDone(lives).succeeded == lives.count
        }
        let runs = JobRuns(redis: try cache, settings: JobRunSettings(), owner: "chaos", logger: logger, alerts: nil)
        for (job, period) in [
            ("store-score", String(ledger.day.prefix(8))), (BookRecJobs.prewarmJob, ledger.day),
            (BookRecJobs.pushJob, ledger.slot),
        ] {
            try await waitUntil("the run \(job) \(period) settled", timeout: .seconds(180)) {
                guard let run = try await runs.progress(job: job, period: period) else { return true }
                return run.isFinished && !run.owesFinishStep
            }
        }
    }

    /// The replay: the fleet stopped, every group reset to earliest, the fleet started, caught up.
    private func replay() async throws {
        let before = try await ChaosRecount(chaos: self).digest()

        await fleet.terminateAll()
        let operations = GroupOperations(bootstrapServers: bootstrap, properties: KafkaProperties(), logger: logger)
        for spec in TopicCatalog.sources {
            guard let group = spec.consumerGroup else { continue }
            _ = try await operations.resetOffsets(group: group, topic: spec.name, to: .earliest)
        }
        faults.append("every group reset to earliest, the fleet restarted")
        for pod in fleet.pods { try await fleet.restart(pod, waitForReady: false) }
        for pod in fleet.pods { try await fleet.waitReady(pod) }
        try await settle()
        let after = try await ChaosRecount(chaos: self).digest()
        let changed = Set(before.keys).union(after.keys).sorted().filter { before[$0] != after[$0] }
        guard changed.isEmpty else {
            throw ChaosFailure(
                "the replay changed "
                    + changed.map { "\($0): \(before[$0] ?? "nothing") -> \(after[$0] ?? "nothing")" }
                    .joined(separator: "; "))
        }
    }

    private func produceBadInputEverywhere() async throws {
        let topics: [(TopicSpec, String, String, [String])] = [
            (
                TopicCatalog.storeEntry,
                #"{"event_id": "3f6c2a9e-8d1b-4c57-9a0e-2b7f5d1c8e44", "user_id": 42, "store_id": 7, "entered_at": "2026-01-01T00:00:00Z"}"#,
                "42", ["user_id", "store_id"]
            ),
            (
                TopicCatalog.liveReservation,
                #"{"reservation_id": "r", "live_id": 5, "shop_id": 9101, "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z"}"#,
                "9101", ["live_id", "shop_id"]
            ),
            (
                TopicCatalog.storeRecommendationBatches,
                #"{"job": "store-score", "period": "20260101", "attempt": 1, "batch": 0, "ids": [42], "produced_at": "2026-01-01T00:00:00Z"}"#,
                "store-score:20260101:0", ["attempt"]
            ),
            (
                TopicCatalog.bookRecommendationBatches,
                #"{"job": "book-rec-push", "period": "2026010100", "attempt": 1, "batch": 0, "ids": [42], "produced_at": "2026-01-01T00:00:00Z"}"#,
                "book-rec-push:2026010100:0", ["attempt"]
            ),
        ]
        for (spec, template, key, ids) in topics {
            let inputs = ExtremeInputs.bad(template: template, key: key, ids: ids)
            ledger.bad[spec.name, default: []] += try await ExtremeInputs.produce(
                inputs, to: spec.name, bootstrap: bootstrap)
        }
        faults.append("\(ledger.bad.values.map(\.count).reduce(0, +)) bad inputs on the four consumed topics")
    }

    // MARK: - Phases and faults

    /// Waits for a phase to be done, landing the scenario's fault when the phase's progress
    /// reaches its share, and carrying out what the fault left for later (a pod to restart).
    private func phase(
        _ phase: ChaosPhase, progress: @escaping () async throws -> Double, done: @escaping () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + .seconds(300)
        while true {
            try await runDue()
            if !applied, scenario.fault.phase == phase {
                let share = (try? await progress()) ?? 0
                if share >= scenario.fault.at {
                    applied = true
                    try await land(scenario.fault, progress: share)
                }
            }
            if later.isEmpty, (try? await done()) == true {
                if scenario.fault.phase == phase, !applied {
                    applied = true
                    faults.append(
                        "the \(phase.rawValue) phase ended before the fault's \(Int(scenario.fault.at * 100)) %")
                }
                return
            }
            guard ContinuousClock.now < deadline else {
                throw ChaosFailure("the \(phase.rawValue) phase did not end in 300 s")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    private func runDue() async throws {
        while let index = later.firstIndex(where: { $0.at <= .now }) {
            let due = later.remove(at: index)
            try await due.action()
        }
    }

    private func after(_ delay: Duration, _ what: String, _ action: @escaping () async throws -> Void) {
        later.append((.now + delay, what, action))
    }

    /// The fault, now; what undoes it is left for later.
    private func land(_ fault: ChaosFault, progress: Double) async throws {
        let at = "at \(Int(progress * 100)) %"
        switch fault {
        case .none, .replay, .badInput:
            return
        case .kill(let phase, _):
            let pod = try pod(of: Self.worker(of: phase))
            await fleet.kill(pod)
            faults.append("kill -9 \(pod.name) \(at) of \(phase.rawValue)")
            after(.seconds(3), "restart \(pod.name)") { try await self.fleet.restart(pod, waitForReady: false) }
        case .stopLeaseHolder(let phase):
            let pod = try await leaseHolder(of: phase)
            pod.process.signal(SIGSTOP)
            faults.append("SIGSTOP \(pod.name) \(at) of \(phase.rawValue), SIGCONT 7 s later")
            after(.seconds(7), "SIGCONT \(pod.name)") { pod.process.signal(SIGCONT) }
        case .terminateAll(let phase, _):
            await fleet.terminateAll()
            faults.append("SIGTERM every pod \(at) of \(phase.rawValue)")
            for pod in fleet.pods { try await fleet.restart(pod, waitForReady: false) }
        case .restartRedis(let phase, _):
            try await service("stop", "redis")
            try await service("start", "redis")
            try await cache.send("SELECT", Self.redisDatabase)
            faults.append("Redis restarted empty \(at) of \(phase.rawValue)")
        case .restartPostgres(let phase, _):
            try await service("stop", "postgres")
            faults.append("PostgreSQL stopped \(at) of \(phase.rawValue), started 3 s later")
            after(.seconds(3), "start PostgreSQL") {
                try await self.service("start", "postgres")
                try await self.connectDatabase()
            }
        case .brokersDown(let phase, _):
            for broker in 1...3 { _ = try control("broker-down \(broker)") }
            faults.append("every broker down \(at) of \(phase.rawValue), up 5 s later")
            after(.seconds(5), "brokers up") { for broker in 1...3 { _ = try self.control("broker-up \(broker)") } }
        case .requestErrors(let phase, _):
            _ = try control("request-errors Produce 30 NOT_LEADER_FOR_PARTITION")
            _ = try control("request-errors Fetch 30 NOT_LEADER_FOR_PARTITION")
            _ = try control("request-errors OffsetCommit 10 COORDINATOR_NOT_AVAILABLE")
            faults.append("produce, fetch and commit errors \(at) of \(phase.rawValue)")
        case .latency(let phase, _):
            for broker in 1...3 { _ = try control("latency \(broker) 300") }
            faults.append("300 ms per request \(at) of \(phase.rawValue) for 5 s")
            after(.seconds(5), "latency off") { for broker in 1...3 { _ = try self.control("latency \(broker) 0") } }
        case .restartBroker(let phase, _):
            try await service("stop", "kafka")
            try await service("start", "kafka", extra: ["PREWARM_DEV_KAFKA_KEEP_DATA": "1"])
            faults.append("the broker restarted (data kept) \(at) of \(phase.rawValue)")
        case .downstreamDown(let phase, let service, let seconds):
            simulator.behaviour.down = [service]
            faults.append("\(service) down \(at) of \(phase.rawValue) for \(seconds) s")
            after(.seconds(seconds), "\(service) back") { self.simulator.behaviour.down = [] }
        }
    }

    private func control(_ command: String) throws -> String {
        try DevBrokerControlClient(controlFile: base["PREWARM_DEV_BROKER_CONTROL_FILE"] ?? "").send(command)
    }

    static func worker(of phase: ChaosPhase) -> ChaosWorker {
        switch phase {
        case .ingest: return .entryIngest
        case .scoring: return .storeScorer
        case .ka: return .kaPrewarmer
        case .prewarm, .push: return .pushProducer
        }
    }

    /// A random running pod of the worker.
    func pod(of worker: ChaosWorker) throws -> ChaosPod {
        let running = fleet.pods(of: worker).filter(\.isRunning)
        guard !running.isEmpty else { throw ChaosFailure("no \(worker.rawValue) pod is running") }
        return running[Int(random.next() % UInt64(running.count))]
    }

    /// The pod holding the phase's lease: the KA task's runner, the scoring run's winner (or
    /// a random pod of the worker when nobody holds it now).
    private func leaseHolder(of phase: ChaosPhase) async throws -> ChaosPod {
        var owner: String?
        switch phase {
        case .ka:
            owner = try await db.query(
                "SELECT owner FROM prewarm_tasks WHERE kind = 'ka-prewarm' AND state = 'running' LIMIT 1"
            ).first?[0].string
        default:
            let runs = JobRuns(
                redis: try cache, settings: JobRunSettings(), owner: "chaos", logger: logger, alerts: nil)
            owner = try await runs.progress(job: "store-score", period: String(ledger.day.prefix(8)))?.owner
        }
        let pid = owner.flatMap { $0.split(separator: ":").last.flatMap { Int32($0) } }
        if let holder = fleet.pods(of: Self.worker(of: phase)).first(where: { $0.process.pid == pid && $0.isRunning }) {
            return holder
        }
        return try pod(of: Self.worker(of: phase))
    }

    private func adminPost(_ pod: ChaosPod, _ path: String) async throws -> (Int, String) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(pod.port)\(path)")!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(fleet.token)", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 30
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    func waitUntil(_ what: String, timeout: Duration, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            try await runDue()
            guard ContinuousClock.now < deadline else { throw ChaosFailure("\(what): not within \(timeout)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
