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

@Suite("entry-ingest end to end on the dev broker, PostgreSQL and Redis")
struct EntryIngestFlowTests {
    let shanghai = TimeZone(identifier: "Asia/Shanghai")!

    private func run(
        _ handler: EntryIngestHandler, topic: String, group: String,
        until condition: @escaping (ConsumeLoop) async throws -> Bool
    ) async throws -> ConsumeLoop {
        let bootstrap = try TestEnvironment.kafkaBootstrap
        let properties = KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"])
        let loop = ConsumeLoop(
            configuration: ConsumeLoopConfiguration(
                groupID: group, maxBatchMessages: 100, maxBatchWait: .milliseconds(100)),
            consumer: try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    groupID: group, bootstrapServers: bootstrap, properties: properties)),
            deadLetterProducer: try KafkaProducer(
                configuration: KafkaProducerConfiguration(bootstrapServers: bootstrap)),
            routes: [TopicRoute(topic: topic, handler: handler)], logger: Logger(label: "test.ingest"))
        let services = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [loop], logger: Logger(label: "test")))
        let task = Task { try await services.run() }
        try await eventually(timeout: .seconds(90), "entry-ingest to catch up") { try await condition(loop) }
        await services.triggerGracefulShutdown()
        try await task.value
        return loop
    }

    @Test("ingest, then replay from the start: row count and every day count unchanged; bad events dead-lettered")
    func ingestAndReplay() async throws {
        let database = try await IngestDatabase.make()
        let db = database.connection
        let schema = database.schema
        let redis = try await RedisConnection.connect(try TestEnvironment.redis())
        let activity = ActivityWriter(redis: redis, timeZone: shanghai, keyPrefix: schema + ":")
        let handler = EntryIngestHandler(
            decoder: StoreEntryDecoder(), directory: StoreDirectory(database: db), writer: ShardWriter(database: db),
            activity: activity)
        let topic = try TestEnvironment.createTopic(partitions: 3)
        try TestEnvironment.createTopic(named: topic + ".dlq", partitions: 1)

        // 200 events over 40 users and 10 days, users often seen twice a day; then two bad ones.
        let formatter = ISO8601DateFormatter()
        let start = formatter.date(from: "2026-11-10T00:00:00Z")!
        var events: [(user: Int64, json: String, at: Date)] = (0..<200).map { index in
            let user = Int64(index % 40 + 1)
            let at = start.addingTimeInterval(Double(index % 10) * 86_400 + Double(index % 7) * 3_000)
            let json =
                #"{"event_id":"\#(UUID().uuidString)","user_id":\#(user),"store_id":\#(index % 20 + 1),"entered_at":"\#(formatter.string(from: at))"}"#
            return (user, json, at)
        }
        events.append(
            (
                5,
                #"{"event_id":"\#(UUID().uuidString)","user_id":5,"store_id":999,"entered_at":"2026-11-11T00:00:00Z"}"#,
                start
            ))
        events.append(
            (
                6,
                #"{"event_id":"\#(UUID().uuidString)","user_id":6,"store_id":1,"entered_at":"2031-01-01T00:00:00Z"}"#,
                start
            ))
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(bootstrapServers: try TestEnvironment.kafkaBootstrap))
        try await producer.send(events.map { KafkaProducerMessage(topic: topic, key: String($0.user), value: $0.json) })
        await producer.close()

        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = shanghai
        let expectedDays = Set(events.prefix(200).map { "\($0.user)@\(calendar.startOfDay(for: $0.at))" }).count
        func dayCountTotal() async throws -> Int {
            let values = try await redis.send("HVALS", activity.monthKey("202611")).array ?? []
            return values.compactMap { $0.integer.map(Int.init) }.reduce(0, +)
        }

        let group = TestEnvironment.uniqueName("entry-ingest")
        let first = try await run(handler, topic: topic, group: group) { _ in
            try await database.shardRows() == 200
        }
        #expect(first.statistics.snapshot.deadLettered == 2)
        #expect(try await dayCountTotal() == expectedDays)

        let operations = GroupOperations(
            bootstrapServers: try TestEnvironment.kafkaBootstrap,
            properties: KafkaProperties(["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"]),
            logger: Logger(label: "t"))
        _ = try await operations.resetOffsets(group: group, topic: topic, to: .earliest)
        let replay = try await run(handler, topic: topic, group: group) { loop in
            let done = loop.statistics.snapshot
            return done.processed + done.deadLettered >= 202
        }
        #expect(try await operations.lag(group: group, topics: [topic]).allSatisfy { $0.lag == 0 })
        #expect(replay.statistics.snapshot.consumed >= 202, "the replay read everything again")
        #expect(try await database.shardRows() == 200, "no event stored twice")
        #expect(try await dayCountTotal() == expectedDays, "no day counted twice")

        await redis.close()
        await database.drop()
    }
}
