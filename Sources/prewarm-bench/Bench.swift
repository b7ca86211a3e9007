import ArgumentParser
import Foundation
import Kafka
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis

/// One scenario through the wrappers; prints `seconds=<s>` for scripts/bench.sh, which runs
/// the stock tool on the same work and prints the ratio.
@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prewarm-bench", abstract: "Time one scenario through prewarm's wrappers.")

    @Argument(help: "redis-set | pg-copy | kafka | ingest-events | wait-processed | scoring-data | wait-run | api-data")
    var scenario: String

    @Option(help: "scoring-data: store entries in all (the users are --count).")
    var rows = 10_000_000

    @Option(help: "wait-run: the job, its period and the attempt to wait for.")
    var job = "store-score"

    @Option(help: "wait-run: the period.")
    var period = ""

    @Option(help: "wait-run: the attempt (0: whatever attempt is under way, if any).")
    var attempt = 1

    @Option(help: "ingest-events: where to write the stock tools' input (rows per shard, Redis commands).")
    var files = "."

    @Option(help: "Items in the scenario.")
    var count = 100_000

    @Option(help: "Table (pg-copy) or topic (kafka) to use.")
    var target = "bench"

    @Option(help: "wait-processed: the worker's admin port.")
    var port = 0

    @Option(help: "wait-processed: the worker's pid (waiting fails if it exits).")
    var pid: Int32 = 0

    func run() async throws {
        let environment = EnvironmentReader(ProcessInfo.processInfo.environment)
        let clock = ContinuousClock()
        let elapsed: Duration
        switch scenario {
        case "redis-set":
            let redis = try await RedisConnection.connect(try environment.redis(clientName: "bench"))
            let commands = (0..<count).map { RedisCommand("SET", "bench:key:\($0)", "value-\($0)") }
            elapsed = try await clock.measure { _ = try await redis.pipeline(commands) }
            await redis.close()
        case "pg-copy":
            let db = try await PostgresConnection.connect(try environment.postgres(applicationName: "bench"))
            try await db.query("DROP TABLE IF EXISTS \(target)")
            try await db.query("CREATE TABLE \(target) (id bigint PRIMARY KEY, user_id bigint, note text)")
            var rows = PostgresCopyRows()
            for id in 0..<count { rows.append([id, id % 5000, "note-\(id)"]) }
            elapsed = try await clock.measure {
                try await db.copy(into: target, columns: ["id", "user_id", "note"], rows: rows)
            }
            await db.close()
        case "kafka":
            let kafka = try environment.kafka()
            let messages = (0..<count).map {
                KafkaProducerMessage(topic: target, key: String($0 % 5000), value: "value-\($0)-0123456789")
            }
            let consumer = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    groupID: "bench-\(UInt64(Date().timeIntervalSince1970))", bootstrapServers: kafka.bootstrapServers,
                    // The mock broker holds an idle consumer's fetch for all of fetch.wait.max.ms
                    // even when data arrives (real brokers answer at once), so shorten the wait.
                    properties: KafkaProperties(["fetch.wait.max.ms": "100"]).merging(kafka.properties)))
            try await consumer.subscribe([target])
            // Join the group first: kcat -C reads without a group, so the join is not compared.
            while try await consumer.assignment().isEmpty {
                _ = try await consumer.poll(maxMessages: 1, timeoutMilliseconds: 100)
            }
            // Like kcat's run, the producer's start-up counts: create, fetch metadata, send, close.
            elapsed = try await clock.measure {
                let producer = try KafkaProducer(
                    configuration: KafkaProducerConfiguration(
                        bootstrapServers: kafka.bootstrapServers, properties: kafka.properties))
                try await producer.prepare(topics: [target])
                try await producer.send(messages)
                await producer.close()
                var received = 0
                while received < count {
                    let batch = try await consumer.poll(maxMessages: 10_000, timeoutMilliseconds: 100)
                    received += batch.messages.count
                    try await consumer.commit(batch.messages)
                }
            }
            await consumer.close()
        case "wait-processed":
            var first = Duration.zero
            elapsed = try clock.measure { first = try ProcessedWaiter(port: port, count: count, pid: pid).wait() }
            print(
                "first=\(String(format: "%.3f", first.seconds))"
            )
        case "scoring-data":
            let workload = ScoringWorkload(users: count, rows: rows, timeZone: try environment.timeZone())
            elapsed = try await clock.measure {
                try await workload.write(
                    postgres: try environment.postgres(applicationName: "bench"),
                    redis: try environment.redis(clientName: "bench"))
            }
        case "wait-run":
            let waiter = RunWaiter(
                redis: try environment.redis(clientName: "bench"), job: job, period: period, attempt: attempt)
            var run: JobRunProgress?
            elapsed = try await clock.measure { run = try await waiter.wait() }
            print("state=\(run?.state.rawValue ?? "?") items=\(run?.itemsDone ?? 0) batches=\(run?.batchesDone ?? 0)")
        case "api-data":
            elapsed = try await clock.measure {
                try await APIWorkload(users: count).write(
                    postgres: try environment.postgres(applicationName: "bench"),
                    redis: try environment.redis(clientName: "bench"), cluster: try environment.redisCluster())
            }
        case "ingest-events":
            elapsed = try await clock.measure { try await IngestWorkload(count: count, topic: target).write(to: files) }
        default:
            throw ValidationError(
                "unknown scenario '\(scenario)': redis-set, pg-copy, kafka, ingest-events, wait-processed, "
                    + "scoring-data, wait-run or api-data")
        }
        let seconds = elapsed.seconds
        print("seconds=\(String(format: "%.3f", seconds))")
    }
}
