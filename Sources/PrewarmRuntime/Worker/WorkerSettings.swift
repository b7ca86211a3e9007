import Foundation
import Kafka
import Postgres
import PrewarmConfiguration
import Redis

/// Everything the runtime reads at start-up, checked once: a bad value stops the worker
/// with a message naming it.
public struct WorkerSettings: Sendable {
    public var worker: String
    /// Empty for a worker that uses no Kafka.
    public var kafkaBootstrapServers: String
    public var consumerProperties: KafkaProperties
    public var producerProperties: KafkaProperties
    public var redis: RedisConfiguration
    /// Some nodes of a Redis Cluster, or nil for the one Redis of `redis`.
    public var redisCluster: [RedisSlotMap.Node]?
    public var redisPoolSize: Int
    public var redisEventLoops: Bool
    public var postgres: PostgresConfiguration?
    public var postgresPoolSize: Int
    /// nil for a worker without a consumer group.
    public var loop: ConsumeLoopConfiguration?
    public var admin: AdminConfiguration
    public var shutdownTimeout: Duration
    /// How long an unreachable store is retried at start-up.
    public var startupWait: Duration
    public var timeZone: TimeZone
    public var retryAlertAfter: Duration
    /// How long Redis remembers a group's dead-lettered messages.
    public var deadLetterMarkRetention: Duration
    public var http: (connectTimeout: Duration, callTimeout: Duration, maxConnections: Int, ownPool: Bool)
    public var alertWebhook: URL?
    public var jobs: JobRunSettings
    public var tasks: TaskSettings
    /// The resolved settings, for a product's own.
    public let environment: EnvironmentReader

    public init(
        worker: String, group: String?, usesKafka: Bool = true, usesPostgres: Bool, reader: EnvironmentReader
    ) throws {
        environment = reader
        self.worker = worker
        if usesKafka {
            let consumer = try reader.kafka(.consumer)
            kafkaBootstrapServers = consumer.bootstrapServers
            consumerProperties = consumer.properties
            producerProperties = try reader.kafka(.producer).properties
        } else {
            kafkaBootstrapServers = ""
            consumerProperties = KafkaProperties()
            producerProperties = KafkaProperties()
        }
        redis = try reader.redis(clientName: worker)
        redisCluster = try reader.redisCluster()
        redisPoolSize = try reader.value(RuntimeSettings.redisPoolSize)
        redisEventLoops = try reader.value(RuntimeSettings.redisEventLoops)
        postgres = usesPostgres ? try reader.postgres(applicationName: worker) : nil
        postgresPoolSize = try reader.value(RuntimeSettings.postgresPoolSize)
        let initial = try reader.value(RuntimeSettings.retryInitial)
        let maximum = try reader.value(RuntimeSettings.retryMax)
        guard maximum >= initial else {
            throw ConfigurationError(
                "PREWARM_RETRY_MAX_MS", "must be at least PREWARM_RETRY_INITIAL_MS (\(initial.milliseconds))")
        }
        let longBatch = try reader.value(RuntimeSettings.longBatchAfter)
        let maxPollInterval = Int(consumerProperties["max.poll.interval.ms"] ?? "300000") ?? 300_000
        guard longBatch.milliseconds * 2 <= maxPollInterval else {
            throw ConfigurationError(
                "PREWARM_LONG_BATCH_AFTER_S",
                "must be at most half of max.poll.interval.ms (\(maxPollInterval) ms), so polling resumes in time")
        }
        loop = try group.map { group in
            ConsumeLoopConfiguration(
                groupID: group,
                maxBatchMessages: try reader.value(RuntimeSettings.batchMaxMessages),
                maxBatchWait: try reader.value(RuntimeSettings.batchMaxWait),
                retryBackoff: Backoff(initial: initial, maximum: maximum),
                longBatchAfter: longBatch,
                concurrentBatches: try reader.value(RuntimeSettings.batchConcurrency))
        }
        admin = AdminConfiguration(
            host: try reader.value(RuntimeSettings.adminHost),
            port: try reader.value(RuntimeSettings.adminPort),
            advertiseHost: try reader.optionalValue(RuntimeSettings.adminAdvertiseHost),
            token: try reader.optionalValue(RuntimeSettings.adminToken),
            pollStallBound: try reader.value(RuntimeSettings.healthStall),
            handlerStallBound: try reader.value(RuntimeSettings.healthHandlerStall))
        shutdownTimeout = try reader.value(RuntimeSettings.shutdownTimeout)
        startupWait = try reader.value(RuntimeSettings.startupWait)
        timeZone = try reader.timeZone()
        retryAlertAfter = try reader.value(RuntimeSettings.retryAlertAfter)
        deadLetterMarkRetention = try reader.value(RuntimeSettings.deadLetterMarkRetention)
        http = (
            try reader.value(RuntimeSettings.httpConnectTimeout), try reader.value(RuntimeSettings.httpTimeout),
            try reader.value(RuntimeSettings.httpMaxConnections), try reader.value(RuntimeSettings.httpOwnPool)
        )
        alertWebhook = try reader.optionalValue(RuntimeSettings.alertWebhook)
        jobs = JobRunSettings(
            lease: try reader.value(RuntimeSettings.jobLease), checkEvery: try reader.value(RuntimeSettings.jobCheck),
            retention: try reader.value(RuntimeSettings.jobRetention),
            maxBatchCrashes: try reader.value(RuntimeSettings.jobBatchMaxCrashes))
        tasks = TaskSettings(
            heartbeat: try reader.value(RuntimeSettings.taskHeartbeat),
            staleAfter: try reader.value(RuntimeSettings.taskStaleAfter),
            keepSucceeded: try reader.value(RuntimeSettings.taskKeepSucceeded),
            keepFailed: try reader.value(RuntimeSettings.taskKeepFailed))
        guard tasks.staleAfter >= tasks.heartbeat * 3 else {
            throw ConfigurationError(
                "PREWARM_TASK_STALE_AFTER_S",
                "must be at least three heartbeats (PREWARM_TASK_HEARTBEAT_S = \(tasks.heartbeat)), "
                    + "or a task that beats on time would be rescued")
        }
    }
}

extension WorkerSettings {
    /// The settings of `definition` as its executable would read them: flags over the
    /// environment over its defaults, every declared setting checked.
    public static func of<Definition: WorkerDefinition>(
        _ definition: Definition.Type, environment: [String: String], arguments: [String] = []
    ) throws -> WorkerSettings {
        let reader = try EnvironmentReader(
            environment: environment, arguments: arguments, declared: definition.declaredSettings,
            defaults: definition.defaults)
        try reader.check(definition.declaredSettings)
        return try WorkerSettings(
            worker: definition.name, group: definition.consumerGroup, usesKafka: definition.usesKafka,
            usesPostgres: definition.usesPostgres,
            reader: reader)
    }
}
