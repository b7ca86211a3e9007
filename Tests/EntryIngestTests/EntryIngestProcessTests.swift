import EntryIngest
import Foundation
import Kafka
import Logging
import Postgres
import PrewarmConfiguration
import PrewarmFixtures
import PrewarmRuntime
import Redis
import TestSupport
import Testing

/// The real executable on the catalog's topic and group, on a dev broker of the test's own
/// (`make demo` replays `store.entry.v1` of the shared one and checks that nothing new is
/// stored). Redis database 13.
@Suite("entry-ingest processes", .closesResources, .serialized)
struct EntryIngestProcessTests {
    @Test(
        "extreme inputs: ids 1 and Int64.max ingested end to end; every bad value, key and header dead-lettered once; no partition stops, the pod lives"
    )
    func extremeInputs() async throws {
        let redis = try await TestEnvironment.emptyRedisDatabase(13)
        let database = try await IngestDatabase.make()
        try await database.connection.query(
            "INSERT INTO stores (store_id, name, category_id, zone_id) VALUES ($1, 'the last store', $1, $1)",
            [Int64.max])
        let broker = try KafkaMockCluster(brokers: 1)
        closeAfterTest { broker.shutdown() }
        let topic = TopicCatalog.storeEntry.name
        try broker.createTopic(topic, partitions: TopicCatalog.storeEntry.partitions)
        try broker.createTopic(topic + ".dlq", partitions: TopicCatalog.deadLetterPartitions)
        let port = try TestEnvironment.freePort()
        let pod = try TestProcess.start(
            "entry-ingest", [],
            environment: [
                "PREWARM_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrapServers, "PREWARM_KAFKA_BOOTSTRAP_FILE": "",
                "PREWARM_POSTGRES_URL": database.configuration.conninfo, "PREWARM_REDIS_DB": "13",
                "PREWARM_ADMIN_PORT": String(port), "PREWARM_ADMIN_HOST": "127.0.0.1", "PREWARM_LOG_LEVEL": "info",
                "PREWARM_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",

                "PREWARM_KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS": "500",
            ])
        closeAfterTest { await pod.stop() }
        let admin = URL(string: "http://127.0.0.1:\(port)")!
        try await pod.waitUntilAnswering(admin)

        let now = RFC3339.format(Date().addingTimeInterval(-60))
        func event(user: Int64, store: Int64) -> String {
            #"{"event_id": "\#(UUID().uuidString)", "user_id": \#(user), "store_id": \#(store), "entered_at": "\#(now)"}"#
        }
        let bad = ExtremeInputs.bad(template: event(user: 42, store: 1), key: "42", ids: ["user_id", "store_id"])
        let good = [
            ExtremeInputs.Input("user 1", key: "1", json: event(user: 1, store: 1)),
            ExtremeInputs.Input(
                "user Int64.max", key: String(Int64.max), json: event(user: Int64.max, store: Int64.max)),
        ]
        try await ExtremeInputs.expectDeadLetteredOnce(bad, then: good, to: topic, bootstrap: broker.bootstrapServers)
        try await eventually(timeout: .seconds(60), "both good events stored") {
            try await database.shardRows() == 2
        }
        let day = LocalDay.text(Date().addingTimeInterval(-60), in: TimeZone(identifier: "Asia/Shanghai")!)
        #expect(
            try await redis.send("SISMEMBER", ActivityWriter.dayKey(day, prefix: ""), String(Int64.max)) == .integer(1),
            "the largest user id counted on its day")
        try await ExtremeInputs.expectCommittedToTheEnd(
            group: TopicCatalog.storeEntry.consumerGroup!, topic: topic, bootstrap: broker.bootstrapServers)
        #expect(pod.child.exitStatus() == nil, "the pod lives")
        pod.signal(SIGTERM)
        #expect(try await pod.child.wait(timeout: .seconds(30)) == 0)
    }
}
