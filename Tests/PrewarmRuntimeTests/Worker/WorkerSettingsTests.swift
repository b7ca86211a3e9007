import PrewarmConfiguration
import PrewarmRuntime
import Testing

/// A worker that consumes, with one setting of its own.
struct ConsumingWorker: WorkerDefinition {
    static let name = "consuming"
    static let abstract = "a consumer for settings tests"
    static let consumerGroup: String? = "consuming-group"
    static let threshold = Setting.integer("PREWARM_TEST_THRESHOLD", default: 7, in: 1...31, "a product setting")
    static let settings = [threshold.description]
    init(context: WorkerContext) async throws {}
}

/// A worker without a consumer group, using PostgreSQL.
struct GrouplessWorker: WorkerDefinition {
    static let name = "groupless"
    static let abstract = "no group"
    static let usesPostgres = true
    init(context: WorkerContext) async throws {}
}

@Suite("Worker settings from the environment and flags")
struct WorkerSettingsTests {
    let base = ["PREWARM_KAFKA_BOOTSTRAP_SERVERS": "k:9092", "PREWARM_REDIS_HOST": "r"]

    private func settings(_ extra: [String: String] = [:], _ flags: [String] = []) throws -> WorkerSettings {
        try WorkerSettings.of(ConsumingWorker.self, environment: base.merging(extra) { $1 }, arguments: flags)
    }

    @Test("defaults: batches of 500, 25 s to shut down, admin on 8080, triggers off, a pool of 4 Redis connections")
    func defaults() throws {
        let settings = try settings()
        #expect(settings.loop?.maxBatchMessages == 500)
        #expect(settings.loop?.groupID == "consuming-group")
        #expect(settings.shutdownTimeout == .seconds(25))
        #expect(settings.admin.port == 8080)
        #expect(settings.admin.token == nil)
        #expect(settings.postgres == nil)
        #expect(settings.redisPoolSize == 4)
        #expect(try settings.environment.value(ConsumingWorker.threshold) == 7)
    }

    @Test("flags override the environment, in both --name value and --name=value forms")
    func flagsOverride() throws {
        let settings = try settings(
            ["PREWARM_BATCH_MAX_MESSAGES": "100"],
            ["--batch-max-messages", "250", "--admin-port=9100", "--kafka-acks=1", "--test-threshold", "9"])
        #expect(settings.loop?.maxBatchMessages == 250)
        #expect(settings.admin.port == 9100)
        #expect(settings.producerProperties["acks"] == "1")
        #expect(try settings.environment.value(ConsumingWorker.threshold) == 9)
    }

    @Test("consumer-only and producer-only Kafka properties reach only their own client")
    func kafkaPropertiesPerClient() throws {
        let settings = try settings([
            "PREWARM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PREWARM_KAFKA_CONSUMER_QUEUED_MIN_MESSAGES": "5000",
            "PREWARM_KAFKA_PRODUCER_LINGER_MS": "20",
        ])
        #expect(settings.consumerProperties["security.protocol"] == "SASL_SSL")
        #expect(settings.producerProperties["security.protocol"] == "SASL_SSL")
        #expect(settings.consumerProperties["queued.min.messages"] == "5000")
        #expect(settings.producerProperties["queued.min.messages"] == nil)
        #expect(settings.producerProperties["linger.ms"] == "20")
        #expect(settings.consumerProperties["linger.ms"] == nil)
    }

    @Test("a bad value or flag stops start-up with a message naming it, never echoing a secret")
    func badValues() {
        let cases: [([String: String], [String], String)] = [
            (["PREWARM_BATCH_MAX_MESSAGES": "0"], [], "PREWARM_BATCH_MAX_MESSAGES"),
            (["PREWARM_SHUTDOWN_TIMEOUT_S": "soon"], [], "PREWARM_SHUTDOWN_TIMEOUT_S"),
            (["PREWARM_RETRY_INITIAL_MS": "5000", "PREWARM_RETRY_MAX_MS": "1000"], [], "PREWARM_RETRY_MAX_MS"),
            (["PREWARM_KAFKA_MAX_POLL_INTERVAL_MS": "10000"], [], "PREWARM_LONG_BATCH_AFTER_S"),
            (["PREWARM_TEST_THRESHOLD": "40"], [], "PREWARM_TEST_THRESHOLD"),
            (["PREWARM_TASK_HEARTBEAT_S": "20", "PREWARM_TASK_STALE_AFTER_S": "30"], [], "PREWARM_TASK_STALE_AFTER_S"),
            (["PREWARM_ALERT_WEBHOOK": "ftp://hooks.example/secret-path"], [], "PREWARM_ALERT_WEBHOOK"),
            (["PREWARM_REDIS_CLUSTER_NODES": "127.0.0.1:17001,redis-b"], [], "PREWARM_REDIS_CLUSTER_NODES"),
            (["PREWARM_REDIS_CLUSTER_NODES": "127.0.0.1:17001", "PREWARM_REDIS_DB": "3"], [], "PREWARM_REDIS_DB"),
            ([:], ["--no-such-flag", "1"], "--no-such-flag"),
            ([:], ["--admin-port"], "--admin-port"),
        ]
        for (environment, flags, named) in cases {
            let error = #expect(throws: ConfigurationError.self) { _ = try settings(environment, flags) }
            #expect(error?.variable == named)
            #expect(!(error?.description.contains("secret-path") ?? true), "a secret is never echoed")
        }
        let postgres = #expect(throws: ConfigurationError.self) {
            _ = try WorkerSettings.of(GrouplessWorker.self, environment: base)
        }
        #expect(postgres?.variable == "PREWARM_POSTGRES_URL")
    }

    @Test("a worker without a group has no loop settings; one using PostgreSQL declares its pool and tasks")
    func declarations() throws {
        let settings = try WorkerSettings.of(
            GrouplessWorker.self, environment: base.merging(["PREWARM_POSTGRES_URL": "host=db"]) { $1 })
        #expect(settings.loop == nil)
        let declared = Set(GrouplessWorker.declaredSettings.map(\.variable))
        #expect(declared.contains("PREWARM_POSTGRES_POOL_SIZE") && declared.contains("PREWARM_TASK_STALE_AFTER_S"))
        #expect(!declared.contains("PREWARM_BATCH_MAX_MESSAGES"))
        let help = Worker.help(ConsumingWorker.self)
        #expect(help.contains("PREWARM_TEST_THRESHOLD  --test-threshold  default 7"))
        #expect(help.contains("PREWARM_ADMIN_TOKEN  --admin-token  (secret)"))
    }
}
