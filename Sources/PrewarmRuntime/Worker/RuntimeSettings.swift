import Foundation
import Kafka
import Postgres
import PrewarmConfiguration
import Redis

/// The runtime's own settings, each declared once: `--help`, the start-up check and the
/// values below all come from these.
public enum RuntimeSettings {
    public static let batchMaxMessages = Setting.integer(
        "PREWARM_BATCH_MAX_MESSAGES", default: 500, in: 1...100_000, "messages per poll, at most")
    public static let batchMaxWait = Setting<Duration>.milliseconds(
        "PREWARM_BATCH_MAX_WAIT_MS", default: 500, in: 1...60_000, "how long a poll waits for its first message")
    public static let batchConcurrency = Setting.integer(
        "PREWARM_BATCH_CONCURRENCY", default: 1, in: 1...16,
        "a poll's partitions are split into this many batches handled at once")
    public static let retryInitial = Setting<Duration>.milliseconds(
        "PREWARM_RETRY_INITIAL_MS", default: 200, in: 10...60_000, "first backoff after an outage")
    public static let retryMax = Setting<Duration>.milliseconds(
        "PREWARM_RETRY_MAX_MS", default: 30_000, in: 100...600_000, "longest backoff after an outage")
    public static let retryAlertAfter = Setting<Duration>.seconds(
        "PREWARM_RETRY_ALERT_AFTER_S", default: 300, in: 1...86_400,
        "an outage retried this long raises an alert (it is still retried)")
    public static let longBatchAfter = Setting<Duration>.seconds(
        "PREWARM_LONG_BATCH_AFTER_S", default: 10, in: 1...3600,
        "a batch running longer pauses its partitions and keeps polling")
    public static let adminHost = Setting.text("PREWARM_ADMIN_HOST", default: "0.0.0.0", "where admin HTTP listens")
    public static let adminPort = Setting.integer(
        "PREWARM_ADMIN_PORT", default: 8080, in: 0...65535, "admin HTTP port (0: any free port)")
    public static let adminAdvertiseHost = Setting.text(
        "PREWARM_ADMIN_ADVERTISE_HOST", default: nil,
        "the host other machines reach this pod's admin HTTP at, on the pod board (default: PREWARM_ADMIN_HOST, or the host name when that is 0.0.0.0)"
    )
    public static let adminToken = Setting.text(
        "PREWARM_ADMIN_TOKEN", default: nil, "bearer token of the trigger routes; without it they refuse",
        isSecret: true)
    public static let healthStall = Setting<Duration>.seconds(
        "PREWARM_HEALTH_STALL_S", default: 60, in: 5...3600, "/healthz fails after this long without a poll")
    public static let healthHandlerStall = Setting<Duration>.seconds(
        "PREWARM_HEALTH_HANDLER_STALL_S", default: 600, in: 5...86_400,
        "/healthz fails when one handler call has run this long (a hung downstream)")
    public static let shutdownTimeout = Setting<Duration>.seconds(
        "PREWARM_SHUTDOWN_TIMEOUT_S", default: 25, in: 1...300, "bound on a graceful shutdown")
    public static let startupWait = Setting<Duration>.seconds(
        "PREWARM_STARTUP_WAIT_S", default: 60, in: 0...3600,
        "at start-up, Redis or PostgreSQL unreachable (or too slow to answer) is retried this long before the worker exits"
    )
    public static let redisPoolSize = Setting.integer(
        "PREWARM_REDIS_POOL_SIZE", default: 4, in: 1...64, "Redis connections")
    public static let redisEventLoops = Setting.flag(
        "PREWARM_REDIS_EVENT_LOOPS", default: false,
        "Redis connections served by the event loops, non-blocking, instead of a thread each (a read path)")
    public static let postgresPoolSize = Setting.integer(
        "PREWARM_POSTGRES_POOL_SIZE", default: 8, in: 1...100, "PostgreSQL connections at most")
    public static let httpConnectTimeout = Setting<Duration>.milliseconds(
        "PREWARM_HTTP_CONNECT_TIMEOUT_MS", default: 1000, in: 10...60_000, "downstream HTTP connect time-out")
    public static let httpTimeout = Setting<Duration>.milliseconds(
        "PREWARM_HTTP_TIMEOUT_MS", default: 2000, in: 10...600_000, "downstream HTTP call time-out")
    public static let httpOwnPool = Setting.flag(
        "PREWARM_HTTP_OWN_POOL", default: true,
        "plain http:// calls through the runtime's own HTTP/1 pool; false: through async-http-client, as https://")
    public static let httpMaxConnections = Setting.integer(
        "PREWARM_HTTP_MAX_CONNECTIONS", default: 64, in: 1...1024, "HTTP connections per downstream host")
    public static let alertWebhook = Setting<URL>.url(
        "PREWARM_ALERT_WEBHOOK", default: nil, "alerts are also POSTed here as JSON", isSecret: true)
    public static let jobLease = Setting<Duration>.seconds(
        "PREWARM_JOB_LEASE_S", default: 30, in: 2...3600,
        "a job run's lease: a dead winner's run is taken over this long after its last renewal")
    public static let jobCheck = Setting<Duration>.seconds(
        "PREWARM_JOB_CHECK_S", default: 10, in: 1...600,
        "how often a pod looks for job runs to take over or catch up")
    public static let jobRetention = Setting<Duration>.seconds(
        "PREWARM_JOB_RETENTION_S", default: 7 * 86_400, in: 3600...90 * 86_400,
        "how long job-run records are kept in Redis")
    public static let deadLetterMarkRetention = Setting<Duration>.seconds(
        "PREWARM_DLQ_MARK_RETENTION_S", default: 7 * 86_400, in: 3600...90 * 86_400,
        "how long Redis remembers a group's dead-lettered messages, so one handled again is not dead-lettered twice")
    public static let jobBatchMaxCrashes = Setting.integer(
        "PREWARM_JOB_BATCH_MAX_CRASHES", default: 3, in: 1...100,
        "a job batch begun this many times by consumers whose pods died in it is set aside (failed, alerted)")
    public static let taskHeartbeat = Setting<Duration>.seconds(
        "PREWARM_TASK_HEARTBEAT_S", default: 5, in: 1...600, "how often a running task beats")
    public static let taskStaleAfter = Setting<Duration>.seconds(
        "PREWARM_TASK_STALE_AFTER_S", default: 30, in: 3...7200,
        "a running task whose heartbeat is this old is rescued by another pod")
    public static let taskKeepSucceeded = Setting<Duration>.seconds(
        "PREWARM_TASK_KEEP_SUCCEEDED_S", default: 7 * 86_400, in: 60...365 * 86_400,
        "finished tasks (succeeded, cancelled) are pruned after this long")
    public static let taskKeepFailed = Setting<Duration>.seconds(
        "PREWARM_TASK_KEEP_FAILED_S", default: 30 * 86_400, in: 60...365 * 86_400,
        "failed tasks are pruned after this long")

    static let loop = [
        batchMaxMessages.description, batchMaxWait.description, batchConcurrency.description,
        retryInitial.description, retryMax.description, longBatchAfter.description,
        deadLetterMarkRetention.description,
    ]
    static let always = [
        CommonSettings.logLevel.description, CommonSettings.timeZone.description, retryAlertAfter.description,
        adminHost.description, adminPort.description, adminAdvertiseHost.description, adminToken.description,
        healthStall.description,
        healthHandlerStall.description, shutdownTimeout.description, startupWait.description, redisPoolSize.description,
        redisEventLoops.description,
        httpConnectTimeout.description, httpTimeout.description, httpMaxConnections.description,
        httpOwnPool.description,
        alertWebhook.description, jobLease.description, jobCheck.description, jobRetention.description,
        jobBatchMaxCrashes.description,
    ]
    static let tasks = [
        postgresPoolSize.description, taskHeartbeat.description, taskStaleAfter.description,
        taskKeepSucceeded.description, taskKeepFailed.description,
    ]

    /// The runtime settings of a worker that consumes (or not), uses Kafka at all (or not) and
    /// uses PostgreSQL (or not).
    public static func declared(consumes: Bool, usesKafka: Bool, usesPostgres: Bool) -> [SettingDescription] {
        always + (consumes ? loop : []) + CommonSettings.redis + (usesKafka ? CommonSettings.kafka : [])
            + (usesPostgres ? CommonSettings.postgres + tasks : [])
    }
}
