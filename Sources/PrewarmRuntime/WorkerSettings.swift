import Foundation
import Kafka
import Postgres
import PrewarmConfiguration
import Redis

/// Everything a worker reads at start-up, from `PREWARM_*` variables, each overridable by a
/// flag of the same name (`--batch-max-messages 200` for `PREWARM_BATCH_MAX_MESSAGES`).
/// Every value is checked here: a bad one stops the worker with a message naming it.
public struct WorkerSettings: Sendable {
    public var worker: String
    public var kafkaBootstrapServers: String
    public var kafkaProperties: KafkaProperties
    public var redis: RedisConfiguration
    public var postgres: PostgresConfiguration?
    public var loop: ConsumeLoopConfiguration
    public var admin: AdminConfiguration
    public var shutdownTimeout: Duration
    public var timeZone: TimeZone
    /// The environment with the flags applied, for a worker's own settings.
    public let environment: EnvironmentReader

    /// The variables a flag may set (Kafka properties go through `PREWARM_KAFKA_*`).
    public static let variables = [
        "PREWARM_BATCH_MAX_MESSAGES", "PREWARM_BATCH_MAX_WAIT_MS", "PREWARM_BATCH_CONCURRENCY",
        "PREWARM_RETRY_INITIAL_MS", "PREWARM_RETRY_MAX_MS",
        "PREWARM_LONG_BATCH_AFTER_S", "PREWARM_ADMIN_HOST", "PREWARM_ADMIN_PORT", "PREWARM_ADMIN_TOKEN",
        "PREWARM_HEALTH_STALL_S", "PREWARM_SHUTDOWN_TIMEOUT_S", "PREWARM_LOG_LEVEL", "PREWARM_TIMEZONE",
        "PREWARM_REDIS_HOST", "PREWARM_REDIS_PORT", "PREWARM_REDIS_SOCKET", "PREWARM_REDIS_USER", "PREWARM_REDIS_DB",
        "PREWARM_REDIS_CONNECT_TIMEOUT", "PREWARM_REDIS_COMMAND_TIMEOUT", "PREWARM_POSTGRES_URL",
        "PREWARM_POSTGRES_CONNECT_TIMEOUT", "PREWARM_KAFKA_BOOTSTRAP_SERVERS", "PREWARM_KAFKA_BOOTSTRAP_FILE",
    ]

    /// `environment` overlaid with `arguments` (flags), for the worker `worker` in consumer
    /// group `group`. Secrets (passwords, the admin token) are best left to the environment:
    /// flags show in `ps`.
    /// `workerVariables` are the worker's own variables, which flags may set too;
    /// `workerDefaults` are the worker's defaults for any variable (the environment and the
    /// flags override them).
    public init(
        worker: String, group: String, environment: [String: String], arguments: [String] = [], needsPostgres: Bool,
        workerVariables: [String] = [], workerDefaults: [String: String] = [:]
    ) throws {
        let reader = EnvironmentReader(
            try Self.overlay(
                workerDefaults.merging(environment) { $1 }, arguments, workerVariables: workerVariables))
        self.environment = reader
        self.worker = worker
        let kafka = try reader.kafka()
        kafkaBootstrapServers = kafka.bootstrapServers
        kafkaProperties = kafka.properties
        redis = try reader.redis(clientName: worker)
        postgres = needsPostgres ? try reader.postgres(applicationName: worker) : nil
        let initial = try reader.integer("PREWARM_RETRY_INITIAL_MS", default: 200, in: 10...60_000)
        let maximum = try reader.integer("PREWARM_RETRY_MAX_MS", default: 30_000, in: 100...600_000)
        guard maximum >= initial else {
            throw ConfigurationError("PREWARM_RETRY_MAX_MS", "must be at least PREWARM_RETRY_INITIAL_MS (\(initial))")
        }
        let longBatch = try reader.integer("PREWARM_LONG_BATCH_AFTER_S", default: 10, in: 1...3600)
        let maxPollInterval = Int(kafkaProperties["max.poll.interval.ms"] ?? "300000") ?? 300_000
        guard longBatch * 1000 * 2 <= maxPollInterval else {
            throw ConfigurationError(
                "PREWARM_LONG_BATCH_AFTER_S",
                "must be at most half of max.poll.interval.ms (\(maxPollInterval) ms), so polling resumes in time")
        }
        loop = ConsumeLoopConfiguration(
            groupID: group,
            maxBatchMessages: try reader.integer("PREWARM_BATCH_MAX_MESSAGES", default: 500, in: 1...100_000),
            maxBatchWait: .milliseconds(try reader.integer("PREWARM_BATCH_MAX_WAIT_MS", default: 500, in: 1...60_000)),
            retryBackoff: Backoff(initial: .milliseconds(initial), maximum: .milliseconds(maximum)),
            longBatchAfter: .seconds(longBatch),
            concurrentBatches: try reader.integer("PREWARM_BATCH_CONCURRENCY", default: 1, in: 1...16))
        admin = AdminConfiguration(
            host: reader.string("PREWARM_ADMIN_HOST") ?? "0.0.0.0",
            port: try reader.integer("PREWARM_ADMIN_PORT", default: 8080, in: 0...65535),
            token: reader.string("PREWARM_ADMIN_TOKEN"),
            pollStallBound: .seconds(try reader.integer("PREWARM_HEALTH_STALL_S", default: 60, in: 5...3600)))
        shutdownTimeout = .seconds(try reader.integer("PREWARM_SHUTDOWN_TIMEOUT_S", default: 25, in: 1...300))
        timeZone = try reader.timeZone()
    }

    /// Applies `--name value` and `--name=value` flags over the environment; an unknown
    /// flag or one without a value is an error that names it.
    static func overlay(
        _ environment: [String: String], _ arguments: [String], workerVariables: [String] = []
    ) throws -> [String: String] {
        var values = environment
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            guard argument.hasPrefix("--") else {
                throw ConfigurationError(argument, "is not a flag; flags look like --batch-max-messages 200")
            }
            let body = argument.dropFirst(2)
            let parts = body.split(separator: "=", maxSplits: 1).map(String.init)
            let name = "PREWARM_" + parts[0].uppercased().replacingOccurrences(of: "-", with: "_")
            guard variables.contains(name) || workerVariables.contains(name) || name.hasPrefix("PREWARM_KAFKA_") else {
                throw ConfigurationError("--\(parts[0])", "is not a known flag")
            }
            if parts.count == 2 {
                values[name] = parts[1]
                index += 1
            } else {
                guard index + 1 < arguments.count else { throw ConfigurationError("--\(parts[0])", "needs a value") }
                values[name] = arguments[index + 1]
                index += 2
            }
        }
        return values
    }
}
