import EntryIngest
import Foundation
import Kafka
import Logging
import Postgres
import PrewarmRuntime
import Redis
import ServiceLifecycle
import TestSupport
import Testing

@Suite("entry-ingest end to end on the dev broker, PostgreSQL and Redis", .closesResources)
struct EntryIngestFlowTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!
    let properties = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"])

    /// A running consume loop with the entry-ingest handler; `stop()` shuts it down gracefully.
    struct RunningLoop {
        let loop: ConsumeLoop
        let services: ServiceGroup
        let task: Task<Void, any Error>

        func stop() async throws {
            await services.triggerGracefulShutdown()
            try await task.value
        }
    }

    private func start(
        _ handler: EntryIngestHandler, topic: String, group: String, retry: Backoff = Backoff()
    ) throws -> RunningLoop {
        let bootstrap = try TestEnvironment.kafkaBootstrap
        let deadLetters = try KafkaProducer(configuration: KafkaProducerConfiguration(bootstrapServers: bootstrap))
        closeAfterTest { await deadLetters.close() }
        let loop = ConsumeLoop(
            configuration: ConsumeLoopConfiguration(
                groupID: group, maxBatchMessages: 100, maxBatchWait: .milliseconds(100), retryBackoff: retry),
            consumer: try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    groupID: group, bootstrapServers: bootstrap, properties: properties)),
            deadLetterProducer: deadLetters, routes: [TopicRoute(topic: topic, handler: handler)],
            logger: Logger(label: "test.ingest"))
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [loop], logger: Logger(label: "test")))
        return RunningLoop(loop: loop, services: services, task: Task { try await services.run() })
    }

    private func run(
        _ handler: EntryIngestHandler, topic: String, group: String,
        until condition: @escaping (ConsumeLoop) async throws -> Bool
    ) async throws -> ConsumeLoop {
        let running = try start(handler, topic: topic, group: group)
        try await eventually(timeout: .seconds(90), "entry-ingest to catch up") { try await condition(running.loop) }
        try await running.stop()
        return running.loop
    }

    /// `count` valid events over 40 users and the 10 days from 12 days ago (users often seen
    /// twice a day), as (key, JSON, user, time).
    private func goodEvents(_ count: Int) -> [(key: String, json: String, user: Int64, at: Date)] {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = shanghai
        let start = calendar.startOfDay(for: Date().addingTimeInterval(-12 * 86_400))
        return (0..<count).map { index in
            let user = Int64(index % 40 + 1)
            let at = start.addingTimeInterval(Double(index % 10) * 86_400 + Double(index % 7) * 3_000)
            let json =
                #"{"event_id":"\#(UUID().uuidString)","user_id":\#(user),"store_id":\#(index % 20 + 1),"entered_at":"\#(RFC3339.format(at))"}"#
            return (String(user), json, user, at)
        }
    }

    private func produce(_ topic: String, _ messages: [(key: String, json: String)]) async throws {
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        try await producer.send(messages.map { KafkaProducerMessage(topic: topic, key: $0.key, value: $0.json) })
        await producer.close()
    }

    private func handler(_ db: PostgresConnection, _ activity: ActivityWriter) -> EntryIngestHandler {
        EntryIngestHandler(
            decoder: StoreEntryDecoder(), directory: StoreDirectory(pool: PostgresPool(db)),
            writer: ShardWriter(database: db),
            activity: activity)
    }

    private func distinctUserDays(_ events: [(key: String, json: String, user: Int64, at: Date)]) -> Int {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = shanghai
        return Set(events.map { "\($0.user)@\(calendar.startOfDay(for: $0.at))" }).count
    }

    /// The day counts of every user in the months of `events`.
    private func dayCountTotal(
        _ redis: RedisConnection, _ activity: ActivityWriter,
        _ events: [(key: String, json: String, user: Int64, at: Date)]
    ) async throws -> Int {
        var total = 0
        for month in Set(events.map { LocalDay.month($0.at, in: shanghai) }) {
            let values = try await redis.send("HVALS", activity.monthKey(month)).array ?? []
            total += values.compactMap { $0.integer.map(Int.init) }.reduce(0, +)
        }
        return total
    }

    @Test("ingest, then replay from the start: rows and day counts unchanged; each kind of bad event dead-lettered")
    func ingestAndReplay() async throws {
        let database = try await IngestDatabase.make()
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        let activity = ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: database.schema + ":")
        let handler = handler(database.connection, activity)
        let topic = try await TestEnvironment.createTopic(partitions: 3)
        let dlq = try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)

        let good = goodEvents(200)
        let id = { UUID().uuidString }
        let bad: [(key: String, json: String, errorClass: String)] = [
            (
                "5", #"{"event_id":"\#(id())","user_id":5,"store_id":999,"entered_at":"2026-11-11T00:00:00Z"}"#,
                "UnknownStore"
            ),
            (
                "6", #"{"event_id":"\#(id())","user_id":6,"store_id":1,"entered_at":"2031-01-01T00:00:00Z"}"#,
                "FutureTimestamp"
            ),
            ("7", #"{"event_id":"\#(id())","user_id":7,"entered_at":"2026-11-11T00:00:00Z"}"#, "MissingField"),
            (
                "-8", #"{"event_id":"\#(id())","user_id":-8,"store_id":1,"entered_at":"2026-11-11T00:00:00Z"}"#,
                "NonPositiveID"
            ),
            (
                "9", #"{"event_id":"not-a-uuid","user_id":9,"store_id":1,"entered_at":"2026-11-11T00:00:00Z"}"#,
                "BadEventID"
            ),
            ("10", #"{"event_id":"\#(id())","user_id":10,"store_id":1,"entered_at":"yesterday"}"#, "BadTimestamp"),
            (
                "99", #"{"event_id":"\#(id())","user_id":11,"store_id":1,"entered_at":"2026-11-11T00:00:00Z"}"#,
                "KeyMismatch"
            ),
            ("12", #"{"event_id": broken"#, "UndecodableJSON"),
        ]
        // Bad events in between the good ones: the good ones of their batches still go through.
        var messages = good.map { ($0.key, $0.json) }
        for (index, event) in bad.enumerated() { messages.insert((event.key, event.json), at: index * 25 + 3) }
        try await produce(topic, messages)

        let group = TestEnvironment.uniqueName("entry-ingest")
        let first = try await run(handler, topic: topic, group: group) { _ in
            try await database.shardRows() == 200
        }
        #expect(first.statistics.snapshot.deadLettered == bad.count)
        #expect(try await dayCountTotal(redis, activity, good) == distinctUserDays(good))

        // Every bad event is on the DLQ once, with its class and a reason naming the problem.
        let letters = try await TestEnvironment.read(dlq, count: bad.count)
        func header(_ message: KafkaMessage, _ name: String) -> String? {
            message.headers.first { $0.name == name }?.stringValue
        }
        #expect(letters.count == bad.count)
        #expect(
            Set(letters.compactMap { header($0, "prewarm-error-class") }) == Set(bad.map(\.errorClass)),
            "one dead letter per kind")
        for letter in letters {
            let original = bad.first { $0.json == String(decoding: letter.value, as: UTF8.self) }
            #expect(original?.errorClass == header(letter, "prewarm-error-class"), "the value is kept as sent")
            #expect(header(letter, "prewarm-original-topic") == topic)
            #expect(!(header(letter, "prewarm-error-message") ?? "").isEmpty)
        }

        let operations = GroupOperations(
            bootstrapServers: try TestEnvironment.kafkaBootstrap, properties: properties, logger: Logger(label: "t"))
        _ = try await operations.resetOffsets(group: group, topic: topic, to: .earliest)
        let replay = try await run(handler, topic: topic, group: group) { loop in
            // `processed` counts every message finished, dead-lettered ones included.
            loop.statistics.snapshot.processed >= messages.count
        }
        #expect(try await operations.lag(group: group, topics: [topic]).allSatisfy { $0.lag == 0 })
        #expect(replay.statistics.snapshot.consumed >= messages.count, "the replay read everything again")
        #expect(try await database.shardRows() == 200, "no event stored twice")
        #expect(try await dayCountTotal(redis, activity, good) == distinctUserDays(good), "no day counted twice")

        await redis.close()
        await database.drop()
    }

    @Test("PostgreSQL stopped mid-stream: partitions pause and retry, nothing is dead-lettered or lost, and it resumes")
    func postgresStoppedMidStream() async throws {
        let server = try PrivatePostgresServer()
        try await server.start()
        let database = try await IngestDatabase.make(server: try server.configuration)
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        let activity = ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: database.schema + ":")
        let topic = try await TestEnvironment.createTopic(partitions: 3)
        try await TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)
        let good = goodEvents(3000)
        try await produce(topic, good.map { ($0.key, $0.json) })

        // The worker's own connection, which will lose its server.
        let workerDB = try await PostgresConnection.connect(database.configuration)
        let running = try start(
            handler(workerDB, activity), topic: topic, group: TestEnvironment.uniqueName("entry-ingest"),
            retry: Backoff(initial: .milliseconds(100), maximum: .milliseconds(800)))
        try await eventually(timeout: .seconds(60), "some events stored") {
            running.loop.statistics.snapshot.processed >= 200
        }
        try await server.stop()
        let before = running.loop.statistics.snapshot
        #expect(before.processed < good.count, "stopped mid-stream")

        try await eventually(timeout: .seconds(30), "the loop to pause and retry") {
            let now = running.loop.statistics.snapshot
            return now.transientFailures >= before.transientFailures + 3 && !now.pausedPartitions.isEmpty
        }
        let during = running.loop.statistics.snapshot
        #expect(during.deadLettered == 0, "an outage is not bad input")
        #expect(during.processed - before.processed <= 100, "nothing more is stored while the database is down")

        try await server.start()
        let check = try await PostgresConnection.connect(database.configuration)
        // On a time-out, the message names where the loop stood.
        var stored = 0
        func state() -> String {
            let now = running.loop.statistics.snapshot
            return "\(stored) of \(good.count) stored; processed \(now.processed), transient failures "
                + "\(now.transientFailures), paused \(now.pausedPartitions.count) of \(now.assignedPartitions.count)"
        }
        try await eventually(timeout: .seconds(60), "every event stored after the restart (\(state()))") {
            stored =
                try await check.query("SELECT count(*) FROM (\(EntryIngestSchema.allShards("event_id"))) s").first?[0]
                .int ?? 0
            return stored == good.count
        }
        try await running.stop()
        #expect(running.loop.statistics.snapshot.deadLettered == 0)
        #expect(running.loop.statistics.snapshot.pausedPartitions.isEmpty, "resumed")
        #expect(try await dayCountTotal(redis, activity, good) == distinctUserDays(good), "every day counted, once")

        await check.close()
        await workerDB.close()
        await redis.close()
        await database.drop()
        await server.destroy()
    }
}
