import PrewarmConfiguration
import PrewarmRuntime
import Testing

@Suite("Worker settings from the environment and flags")
struct WorkerSettingsTests {
    let base = ["PREWARM_KAFKA_BOOTSTRAP_SERVERS": "k:9092", "PREWARM_REDIS_HOST": "r"]

    private func settings(_ extra: [String: String] = [:], _ flags: [String] = []) throws -> WorkerSettings {
        try WorkerSettings(
            worker: "entry-ingest", group: "entry-ingest", environment: base.merging(extra) { $1 }, arguments: flags,
            needsPostgres: false)
    }

    @Test("defaults: batches of 500, 25 s to shut down, admin on 8080, triggers off")
    func defaults() throws {
        let settings = try settings()
        #expect(settings.loop.maxBatchMessages == 500)
        #expect(settings.shutdownTimeout == .seconds(25))
        #expect(settings.admin.port == 8080)
        #expect(settings.admin.token == nil)
        #expect(settings.loop.groupID == "entry-ingest")
        #expect(settings.postgres == nil)
    }

    @Test("flags override the environment, in both --name value and --name=value forms")
    func flagsOverride() throws {
        let settings = try settings(
            ["PREWARM_BATCH_MAX_MESSAGES": "100"],
            ["--batch-max-messages", "250", "--admin-port=9100", "--kafka-acks=1"])
        #expect(settings.loop.maxBatchMessages == 250)
        #expect(settings.admin.port == 9100)
        #expect(settings.kafkaProperties["acks"] == "1")
    }

    @Test("a bad value or flag stops start-up with a message naming it")
    func badValues() {
        let cases: [([String: String], [String], String)] = [
            (["PREWARM_BATCH_MAX_MESSAGES": "0"], [], "PREWARM_BATCH_MAX_MESSAGES"),
            (["PREWARM_SHUTDOWN_TIMEOUT_S": "soon"], [], "PREWARM_SHUTDOWN_TIMEOUT_S"),
            (["PREWARM_RETRY_INITIAL_MS": "5000", "PREWARM_RETRY_MAX_MS": "1000"], [], "PREWARM_RETRY_MAX_MS"),
            (["PREWARM_KAFKA_MAX_POLL_INTERVAL_MS": "10000"], [], "PREWARM_LONG_BATCH_AFTER_S"),
            ([:], ["--no-such-flag", "1"], "--no-such-flag"),
            ([:], ["--admin-port"], "--admin-port"),
        ]
        for (environment, flags, named) in cases {
            let error = #expect(throws: ConfigurationError.self) { _ = try settings(environment, flags) }
            #expect(error?.variable == named)
        }
        let postgres = #expect(throws: ConfigurationError.self) {
            _ = try WorkerSettings(worker: "w", group: "g", environment: base, needsPostgres: true)
        }
        #expect(postgres?.variable == "PREWARM_POSTGRES_URL")
    }
}
