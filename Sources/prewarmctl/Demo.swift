import BlockingIO
import EntryIngest
import Foundation
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `make demo`: a month of generated canteen traffic through the real `entry-ingest`
/// worker (a child process, configured like a pod), then what it did: rows per shard,
/// busiest stores, daily and monthly activity, the dead-lettered events with their reasons,
/// the nightly archive triggered over HTTP, and a replay from the start that stores nothing
/// twice.
struct Demo {
    let environment: [String: String]
    let kafka: (bootstrapServers: String, properties: KafkaProperties)
    let redis: RedisConfiguration
    let postgres: PostgresConfiguration
    let timeZone: TimeZone
    let events: Int
    let seed: UInt64
    let workerPath: String
    let logDirectory: String
    let console: DemoConsole
    let consolePort: Int
    private let topic = TopicCatalog.storeEntry.name
    private var deadLetterTopic: String { TopicSpec.deadLetterTopic(of: topic) }
    private let logger = Logger(label: "prewarmctl.demo")

    init(
        environment: [String: String], events: Int, seed: UInt64, workerPath: String, logDirectory: String
    ) throws {
        let reader = EnvironmentReader(environment)
        self.environment = environment
        kafka = try reader.kafka()
        redis = try reader.redis(clientName: "prewarmctl-demo")
        postgres = try reader.postgres(applicationName: "prewarmctl-demo")
        timeZone = try reader.timeZone()
        self.events = events
        self.seed = seed
        self.workerPath = workerPath
        self.logDirectory = logDirectory
        let port = environment["PREWARM_DEMO_CONSOLE_PORT"] ?? "8089"
        guard let consolePort = Int(port), (0...65535).contains(consolePort) else {
            throw ConfigurationError(
                "PREWARM_DEMO_CONSOLE_PORT", "must be a port from 0 (no console) to 65535, got '\(port)'")
        }
        self.consolePort = consolePort
        console = DemoConsole(screenshotPath: environment["PREWARM_DEMO_SCREENSHOT"])
    }

    func run() async throws {
        await console.start(environment: environment, port: consolePort, logger: logger)
        do {
            try await runWithConsole()
        } catch {
            await console.stop()
            throw error
        }
        await console.stop()
    }

    private func runWithConsole() async throws {
        let db = try await PostgresConnection.connect(postgres, logger: logger)
        let cache: RedisConnection
        do {
            cache = try await RedisConnection.connect(redis, logger: logger)
        } catch {
            await db.close()
            throw error
        }
        do {
            try await run(db: db, cache: cache)
        } catch {
            await db.close()
            await cache.close()
            throw error
        }
        await db.close()
        await cache.close()
    }

    private func run(db: PostgresConnection, cache: RedisConnection) async throws {
        let applied = try await Migrator.migrate(db, AllMigrations.list, logger: logger)
        try await db.query(
            """
            INSERT INTO stores (store_id, name, category_id, zone_id)
            SELECT g, 'canteen stall ' || g, g % 12 + 1, g % 8 + 1 FROM generate_series(1, $1) g
            ON CONFLICT (store_id) DO NOTHING
            """, [300])
        print(
            "postgres:     schema migrated (\(applied.isEmpty ? "already current" : "applied \(applied)")), 300 stores")

        // The workload, and one event of each kind of bad input.
        let now = Date()
        var generator = StoreEntryGenerator(seed: seed, timeZone: timeZone)
        let good = generator.events(count: events, now: now)
        let bad = StoreEntryGenerator.badMessages(now: now)
        let dlqStart = try await highWatermarks(deadLetterTopic)
        let messages = good.map(\.message) + bad.map { ($0.key, $0.json) }
        try await produce(messages)
        print("kafka:        produced \(good.count) store-entry events and \(bad.count) bad ones to \(topic)")

        // The worker, exactly as a pod runs it.
        let rowsBefore = try await rowCount(db)
        let daysBefore = try await monthDayTotal(cache, at: now)
        let token = UUID().uuidString
        let port = Int.random(in: 20_000...29_999)
        var started = ContinuousClock.now
        var worker = try startWorker(port: port, token: token, log: "entry-ingest.log")
        try await waitForLagZero(worker)
        let ingestTime = ContinuousClock.now - started
        let stored = try await rowCount(db) - rowsBefore
        print(
            "entry-ingest: stored \(stored) new rows in \(format(ingestTime)) (\(rate(stored, ingestTime)) events/s, "
                + "group join included); lag 0; log in \(logDirectory)/entry-ingest.log")
        try await showShards(db)
        try await showBusiestStores(db, since: now.addingTimeInterval(-21 * 86_400))
        try await showActivity(cache, now: now)
        try await showDeadLetters(from: dlqStart, expected: bad.count)

        // The nightly archive, triggered now over the admin API (forced: the demo may run twice a
        // day): 202 at once, the run goes on in the background and its record says how it went.
        started = .now
        let (status, body) = try await trigger(port: port, token: token, job: EntryArchiver.jobName)
        print("archive:      POST /jobs/\(EntryArchiver.jobName)/trigger?force=true -> \(status) \(body)")
        let run = try await waitForRun(port: port, job: EntryArchiver.jobName, answer: body)
        print(
            "archive:      GET /jobs/\(EntryArchiver.jobName)/runs/\(run.period) -> \(run.state.rawValue), attempt "
                + "\(run.attempt), took \(String(format: "%.2f", run.durationSeconds ?? 0)) s "
                + "(\(format(.now - started)) from the trigger)")
        let partitions = try await db.query(
            """
            SELECT c.relname, count(a.*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            LEFT JOIN \(EntryIngestSchema.archiveTable) a ON a.tableoid = c.oid
            WHERE i.inhparent = $1::regclass GROUP BY c.relname ORDER BY c.relname
            """, [EntryIngestSchema.archiveTable])
        for row in partitions.rows {
            print("archive:      \(row[0].string ?? "?"): \(row[1].int ?? 0) rows")
        }

        // Replay: stop the worker (graceful), reset the group to the start, run it again.
        started = .now
        worker.signal(SIGTERM)
        let exit = try await worker.wait(timeout: .seconds(40))
        print(
            "entry-ingest: SIGTERM -> finished its batch, committed, left the group, exit \(exit) in \(format(.now - started))"
        )
        let operations = GroupOperations(
            bootstrapServers: kafka.bootstrapServers, properties: kafka.properties, logger: logger)
        _ = try await operations.resetOffsets(
            group: TopicCatalog.storeEntry.consumerGroup!, topic: topic, to: .earliest)
        let replayed = try await operations.lag(group: TopicCatalog.storeEntry.consumerGroup!, topics: [topic])
            .map(\.lag).reduce(0, +)
        let rowsBeforeReplay = try await rowCount(db) + archivedCount(db)
        let daysBeforeReplay = try await monthDayTotal(cache, at: now)
        let lettersBeforeReplay = try await highWatermarks(deadLetterTopic).values.reduce(0, +)
        started = .now
        worker = try startWorker(port: port, token: token, log: "entry-ingest-replay.log")
        try await waitForLagZero(worker)
        let rowsAfterReplay = try await rowCount(db) + archivedCount(db)
        let daysAfterReplay = try await monthDayTotal(cache, at: now)
        let lettersAfterReplay = try await highWatermarks(deadLetterTopic).values.reduce(0, +)
        print(
            "replay:       offsets reset to earliest, \(replayed) events read again in \(format(.now - started)): "
                + "\(rowsAfterReplay - rowsBeforeReplay) new rows, month day-count total "
                + "\(daysBeforeReplay) -> \(daysAfterReplay) (was \(daysBefore) before this demo), "
                + "\(lettersAfterReplay - lettersBeforeReplay) dead letters sent again")
        worker.signal(SIGTERM)
        _ = try await worker.wait(timeout: .seconds(40))
        guard rowsAfterReplay == rowsBeforeReplay, daysAfterReplay == daysBeforeReplay else {
            throw DemoFailure("the replay changed stored data")
        }
        guard lettersAfterReplay == lettersBeforeReplay else {
            throw DemoFailure("the replay dead-lettered events again")
        }
        try await showStoreRecommendations(db: db, cache: cache, now: now)
        try await showKAPrewarm(db: db, cache: cache)
        try await showBookRecPush(db: db, cache: cache)

        print("")
        print("prewarmctl status:")
        var fleet = try await FleetStatus.read(redis: cache, postgres: db, runsSince: now.addingTimeInterval(-86_400))
        if let lag = await StatusCommand.kafkaLag(EnvironmentReader(environment)) {
            fleet.lag = lag
            fleet.lagSource = "kafka"
        }
        print(StatusView(status: fleet, timeZone: timeZone).render())
        print("")
        print("demo: done")
    }

    // MARK: - The worker

    private func startWorker(port: Int, token: String, log: String) throws -> ChildProcess {
        try start(workerPath, port: port, token: token, log: log)
    }

    /// A worker executable (next to entry-ingest) started as a pod would be.
    func start(
        _ path: String, port: Int, token: String, log: String, extra: [String: String] = [:]
    ) throws -> ChildProcess {
        var variables = environment.merging(extra) { $1 }
        variables["PREWARM_ADMIN_PORT"] = String(port)
        variables["PREWARM_ADMIN_HOST"] = "127.0.0.1"
        variables["PREWARM_ADMIN_TOKEN"] = token
        variables["PREWARM_LOG_LEVEL"] = environment["PREWARM_DEMO_WORKER_LOG_LEVEL"] ?? "info"
        let logPath = logDirectory + "/" + log
        return try ChildProcess.spawn(path, [], environment: variables, standardOutput: logPath, standardError: logPath)
    }

    private func waitForLagZero(_ worker: ChildProcess) async throws {
        let operations = GroupOperations(
            bootstrapServers: kafka.bootstrapServers, properties: kafka.properties, logger: logger)
        let deadline = ContinuousClock.now + .seconds(180)
        while true {
            if let status = worker.exitStatus() {
                throw DemoFailure("entry-ingest exited with status \(status); see \(logDirectory)")
            }
            let lag = try await operations.lag(group: TopicCatalog.storeEntry.consumerGroup!, topics: [topic])
            if !lag.isEmpty, lag.allSatisfy({ $0.committed != nil && $0.lag == 0 }) { return }
            guard ContinuousClock.now < deadline else { throw DemoFailure("entry-ingest did not catch up in 180 s") }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    func trigger(port: Int, token: String, job: String, period: String? = nil) async throws -> (Int, String) {
        let query = "force=true" + (period.map { "&period=\($0)" } ?? "")
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/jobs/\(job)/trigger?\(query)")!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.timeoutInterval = 300
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// Polls the run's progress until it ends and its finish step settled its outcome.
    func waitForRun(port: Int, job: String, answer: String) async throws -> JobRunProgress {
        struct Accepted: Decodable { let period: String }
        let period = try JSONDecoder().decode(Accepted.self, from: Data(answer.utf8)).period
        let url = URL(string: "http://127.0.0.1:\(port)/jobs/\(job)/runs/\(period)")!
        let deadline = ContinuousClock.now + .seconds(300)
        while ContinuousClock.now < deadline {
            let (data, _) = try await URLSession.shared.data(from: url)
            if let run = try? JSONDecoder.prewarm.decode(JobRunProgress.self, from: data), run.isFinished,
                !run.owesFinishStep
            {
                return run
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw DemoFailure("the \(job) run did not finish in 300 s")
    }

    // MARK: - Kafka

    func produce(_ messages: [(key: String, json: String)], to topic: String? = nil) async throws {
        let topic = topic ?? self.topic
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: kafka.bootstrapServers, properties: kafka.properties))
        try await producer.prepare(topics: [topic])
        try await producer.send(messages.map { KafkaProducerMessage(topic: topic, key: $0.key, value: $0.json) })
        await producer.close()
    }

    func highWatermarks(_ topic: String) async throws -> [KafkaTopicPartition: Int64] {
        let admin = try KafkaAdmin(bootstrapServers: kafka.bootstrapServers, properties: kafka.properties)
        return try await using(admin) { admin in
            let count = try await admin.partitionCounts([topic])[topic] ?? 0
            let marks = try await admin.watermarks((0..<count).map { KafkaTopicPartition(topic, Int32($0)) })
            return marks.mapValues(\.high)
        }
    }

    func showDeadLetters(from start: [KafkaTopicPartition: Int64], expected: Int) async throws {
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: "prewarmctl-demo-reader", bootstrapServers: kafka.bootstrapServers,
                properties: kafka.properties))
        try await consumer.assign(start)
        var letters: [KafkaMessage] = []
        let deadline = ContinuousClock.now + .seconds(30)
        while letters.count < expected, ContinuousClock.now < deadline {
            letters += try await consumer.poll(maxMessages: 100, timeoutMilliseconds: 200).messages
        }
        await consumer.close()
        for letter in letters {
            let header = { (name: String) in letter.headers.first { $0.name == name }?.stringValue ?? "?" }
            print(
                "dlq:          \(header("prewarm-error-class")): \(header("prewarm-error-message")) "
                    + "(from \(header("prewarm-original-topic"))[\(header("prewarm-original-partition"))]@\(header("prewarm-original-offset")))"
            )
        }
    }

    // MARK: - What was stored

    private func shardUnion(_ columns: String) -> String { EntryIngestSchema.allShards(columns) }

    private func rowCount(_ db: PostgresConnection) async throws -> Int {
        try await db.query("SELECT count(*) FROM (\(shardUnion("user_id"))) s").first?[0].int ?? 0
    }

    private func archivedCount(_ db: PostgresConnection) async throws -> Int {
        try await db.query("SELECT count(*) FROM \(EntryIngestSchema.archiveTable)").first?[0].int ?? 0
    }

    private func showShards(_ db: PostgresConnection) async throws {
        let counts = try await db.query(
            "SELECT shard, count(*) FROM (\(shardUnion("user_id"))) s GROUP BY shard ORDER BY shard")
        let values = counts.rows.compactMap { $0[1].int }
        print(
            "postgres:     rows per shard (user_id % 16): \(values.map(String.init).joined(separator: " ")) "
                + "(min \(values.min() ?? 0), max \(values.max() ?? 0))")
    }

    private func showBusiestStores(_ db: PostgresConnection, since: Date) async throws {
        let busiest = try await db.query(
            """
            SELECT e.store_id, s.name, s.category_id, s.zone_id, count(*) AS visits, count(DISTINCT e.user_id) AS users
            FROM (\(shardUnion("store_id, user_id, entered_at"))) e JOIN stores s USING (store_id)
            WHERE e.entered_at >= $1 GROUP BY 1, 2, 3, 4 ORDER BY visits DESC, store_id LIMIT 3
            """, [since])
        for row in busiest.rows {
            print(
                "postgres:     busy: \(row["name"].string ?? "?") (category \(row["category_id"].int ?? 0), "
                    + "zone \(row["zone_id"].int ?? 0)): \(row["visits"].int ?? 0) visits by \(row["users"].int ?? 0) users"
            )
        }
    }

    private func showActivity(_ cache: RedisConnection, now: Date) async throws {
        let writer = ActivityWriter(redis: cache, timeZone: timeZone)
        var perDay: [String] = []
        for back in (0..<7).reversed() {
            let key = LocalDay.text(now.addingTimeInterval(-Double(back) * 86_400), in: timeZone)
            let users = try await cache.send("SCARD", writer.dayKey(key)).integer ?? 0
            perDay.append("\(key.dropFirst(4).prefix(2))-\(key.suffix(2)): \(users)")
        }
        print("redis:        users seen per day ({act}:day:*, last 7 days): \(perDay.joined(separator: ", "))")
        let reader = ActivityReader(redis: cache, timeZone: timeZone, thresholds: try ActivityThresholds())
        let active = try await reader.forEachUser(atLeast: .active, at: now) { _ in }
        let hot = try await reader.forEachUser(atLeast: .hot, at: now) { _ in }
        print(
            "redis:        this calendar month (\(reader.monthKey(of: now))): \(active) users on 7+ days, "
                + "\(hot) on 14+ (the monthly statistic; the store-scorer looks at the last 30 days instead)")
    }

    private func monthDayTotal(_ cache: RedisConnection, at now: Date) async throws -> Int {
        let reader = ActivityReader(redis: cache, timeZone: timeZone, thresholds: try ActivityThresholds())
        let values = try await cache.send("HVALS", reader.monthKey(of: now)).array ?? []
        return values.compactMap { $0.integer.map(Int.init) }.reduce(0, +)
    }

    // MARK: - Formatting

    func format(_ duration: Duration) -> String {
        String(format: "%.2f s", duration.seconds)
    }

    private func rate(_ count: Int, _ duration: Duration) -> Int {
        Int(Double(count) / max(duration.seconds, 0.001))
    }
}

struct DemoFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
