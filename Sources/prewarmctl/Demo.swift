import Foundation
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// The foundation demo: generated store-entry events go through Kafka (produce, consume in
/// a group, commit), PostgreSQL (COPY, a replay refused by the unique key) and Redis
/// (pipelined activity writes, a Lua script by SHA, MGET), and each step reports itself.
struct Demo {
    let kafka: (bootstrapServers: String, properties: KafkaProperties)
    let redis: RedisConfiguration
    let postgres: PostgresConfiguration
    let events: Int
    let seed: UInt64

    private static let dayCount = RedisScript(
        name: "demo-day-count",
        source: "local n = {} for i, key in ipairs(KEYS) do n[i] = redis.call('SCARD', key) end return n")

    func run() async throws {
        let run = String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36)
        var generator = StoreEntryGenerator(seed: seed)
        let generated = generator.events(count: events, run: run)
        print("demo: \(generated.count) store-entry events, run \(run)")
        let consumed = try await throughKafka(generated, run: run)
        try await throughPostgres(consumed)
        try await throughRedis(consumed)
        print("demo: done")
    }

    private func throughKafka(_ events: [StoreEntry], run: String) async throws -> [StoreEntry] {
        let topic = TopicCatalog.storeEntry.name
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                bootstrapServers: kafka.bootstrapServers, properties: kafka.properties))
        try await producer.prepare(topics: [topic])  // what a worker does at start-up
        let started = ContinuousClock.now
        let reports = try await producer.send(
            events.map { KafkaProducerMessage(topic: topic, key: String($0.userID), value: $0.json) })
        await producer.close()
        let partitions = Set(reports.map(\.partition)).count
        print(
            "kafka:    produced \(reports.count) to \(topic) over \(partitions) partitions in \(seconds(since: started)) (acks=all, idempotent)"
        )

        let group = "prewarm-demo-\(run)"
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                groupID: group, bootstrapServers: kafka.bootstrapServers, properties: kafka.properties))
        try await consumer.subscribe([topic])
        let consuming = ContinuousClock.now
        var mine: [StoreEntry] = []
        let deadline = ContinuousClock.now + .seconds(60)
        while mine.count < events.count {
            guard ContinuousClock.now < deadline else {
                throw DemoFailure("consumed only \(mine.count) of \(events.count) events within 60 s")
            }
            let batch = try await consumer.poll(maxMessages: 1000, timeoutMilliseconds: 200)
            mine += batch.messages.compactMap { StoreEntry(json: $0.value) }.filter { $0.eventID.hasPrefix(run) }
            try await consumer.commit(batch.messages)
        }
        let assigned = try await consumer.assignment()
        let committed = try await consumer.committed(assigned)
        var lag: Int64 = 0
        for partition in assigned {
            let high = try await consumer.watermarks(partition).high
            lag += high - ((committed[partition] ?? nil) ?? 0)
        }
        await consumer.close()
        print(
            "kafka:    consumed \(mine.count) in group \(group) in \(seconds(since: consuming)), committed; lag \(lag) over \(assigned.count) partitions"
        )
        return mine
    }

    private func throughPostgres(_ events: [StoreEntry]) async throws {
        let connection = try await PostgresConnection.connect(postgres)
        defer { Task { await connection.close() } }
        try await connection.query(
            """
            CREATE TABLE IF NOT EXISTS demo_store_entry (
                event_id text PRIMARY KEY, user_id bigint NOT NULL, store_id bigint NOT NULL,
                entered_at timestamptz NOT NULL)
            """)
        var rows = PostgresCopyRows()
        for event in events { rows.append([event.eventID, event.userID, event.storeID, event.enteredAt]) }
        let started = ContinuousClock.now
        let copied = try await connection.copy(
            into: "demo_store_entry", columns: ["event_id", "user_id", "store_id", "entered_at"], rows: rows)
        let copyTime = seconds(since: started)
        let replayed = events[0]
        do {
            try await connection.query(
                "INSERT INTO demo_store_entry (event_id, user_id, store_id, entered_at) VALUES ($1, $2, $3, $4)",
                [replayed.eventID, replayed.userID, replayed.storeID, replayed.enteredAt])
            throw DemoFailure("a replayed event was stored twice")
        } catch let error as PostgresError where error.isUniqueViolation {
            print(
                "postgres: copied \(copied) rows in \(copyTime); replaying event \(replayed.eventID) refused as unique violation \(error.sqlState ?? "")"
            )
        }
        let busiest = try await connection.query(
            "SELECT store_id, count(*) AS visits FROM demo_store_entry WHERE event_id LIKE $1 GROUP BY store_id ORDER BY visits DESC, store_id LIMIT 3",
            [String(replayed.eventID.prefix { $0 != "-" }) + "-%"])
        let top = busiest.rows.map { "store \($0["store_id"].int64 ?? 0): \($0["visits"].int ?? 0)" }
        print("postgres: busiest stores of this run: \(top.joined(separator: ", "))")
    }

    private func throughRedis(_ events: [StoreEntry]) async throws {
        let connection = try await RedisConnection.connect(redis)
        defer { Task { await connection.close() } }
        var commands: [RedisCommand] = []
        for event in events {
            commands.append(RedisCommand("SADD", "demo:act:day:\(event.day)", event.userID))
            commands.append(RedisCommand("EXPIRE", "demo:act:day:\(event.day)", 3600))
            commands.append(RedisCommand("SET", "demo:last-store:\(event.userID)", event.storeID, "EX", 3600))
        }
        let started = ContinuousClock.now
        let replies = try await connection.pipeline(commands)
        let failed = replies.filter { if case .error = $0 { return true } else { return false } }.count
        print("redis:    pipelined \(commands.count) commands in \(seconds(since: started)), \(failed) errors")
        let days = Array(Set(events.map(\.day))).sorted()
        let counts = try await connection.run(Self.dayCount, keys: days.map { "demo:act:day:\($0)" })
        let perDay = zip(days, counts.array ?? []).map { "\($0) \($1.integer ?? 0)" }
        print("redis:    active users per day (Lua by SHA): \(perDay.joined(separator: ", "))")
        let sample = Array(Set(events.map(\.userID))).sorted().prefix(5)
        let stores = try await connection.mget(sample.map { "demo:last-store:\($0)" })
        let shown = zip(sample, stores).map {
            "user \($0) -> store \($1.map { String(decoding: $0, as: UTF8.self) } ?? "none")"
        }
        print("redis:    MGET last store of 5 users: \(shown.joined(separator: ", "))")
    }

    private func seconds(since start: ContinuousClock.Instant) -> String {
        let elapsed = ContinuousClock.now - start
        let value = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return String(format: "%.3f s", value)
    }
}

struct DemoFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
