import CoreMetrics
import Foundation
import Kafka
import Logging
import NIOPosix
import Postgres
import PrewarmConfiguration
import Redis
import Synchronization

/// What the runtime hands a worker: everything long-lived, opened at start-up and closed
/// once on shutdown by the runtime (never by the product).
public final class WorkerContext: Sendable {
    public let name: String
    public let settings: WorkerSettings
    public let logger: Logger
    public let metricsFactory: any MetricsFactory
    /// N connections, each on its own I/O thread.
    /// One Redis (a pool) or a Redis Cluster (`PREWARM_REDIS_CLUSTER_NODES`).
    public let redis: any RedisClient & Closable
    /// The one Kafka producer (idempotent, acks=all), of a worker that uses Kafka.
    let kafkaProducer: KafkaProducer?
    /// Downstream HTTP calls, with time-outs and transient/permanent failures.
    public let http: DownstreamClient
    public let alerts: Alerts
    public let flags: RedisFlags
    public let jobRuns: JobRuns
    /// Marks calls in progress that `/healthz` watches.
    public let liveness: Liveness
    public let leaseMetrics: LeaseMetrics
    /// `worker@host:pid`: names this pod in leases, tasks and job runs.
    public let owner: String
    private let postgresPool: PostgresPool?
    private let closed = Atomic<Bool>(false)

    /// The resolved settings, for the worker's own.
    public var environment: EnvironmentReader { settings.environment }

    /// The one Kafka producer (idempotent, acks=all): batches, pushes and dead letters; only for
    /// workers that use Kafka (`usesKafka`): asked for by one that does not, start-up stops with
    /// a message saying what to declare.
    public var producer: KafkaProducer {
        get throws {
            guard let kafkaProducer else { throw UsageError("\(name) uses Kafka but does not declare usesKafka") }
            return kafkaProducer
        }
    }

    /// The PostgreSQL pool; only for workers that declare `usesPostgres` (asked for by one that
    /// does not, start-up stops with a message saying so).
    public var postgres: PostgresPool {
        get throws {
            guard let postgresPool else {
                throw UsageError("\(name) uses PostgreSQL but does not declare usesPostgres")
            }
            return postgresPool
        }
    }

    /// The durable task table (workers that use PostgreSQL).
    public var tasks: TaskQueue { get throws { TaskQueue(pool: try postgres, settings: settings.tasks) } }
    /// The retry table (workers that use PostgreSQL).
    public var retries: RetryTable { get throws { RetryTable(pool: try postgres) } }

    private init(
        settings: WorkerSettings, logger: Logger, metricsFactory: any MetricsFactory, redis: any RedisClient & Closable,
        postgres: PostgresPool?, producer: KafkaProducer?, http: DownstreamClient
    ) {
        self.name = settings.worker
        self.settings = settings
        self.logger = logger
        self.metricsFactory = metricsFactory
        self.redis = redis
        self.postgresPool = postgres
        self.kafkaProducer = producer
        self.http = http
        self.owner =
            "\(settings.worker)@\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
        self.alerts = Alerts(
            worker: settings.worker, logger: logger, metricsFactory: metricsFactory, redis: redis,
            webhook: settings.alertWebhook, client: http)
        self.flags = RedisFlags(redis: redis)
        self.jobRuns = JobRuns(
            redis: redis, settings: settings.jobs, owner: owner, logger: logger, alerts: alerts,
            metricsFactory: metricsFactory)
        self.liveness = Liveness()
        self.leaseMetrics = LeaseMetrics(factory: metricsFactory)
    }

    /// Opens the stores and clients, failing loudly (and closing what opened) if one cannot
    /// be reached: at once for what no wait mends (a wrong password, a bad address), after
    /// `startupWait` of retries for an outage (a store restarting, or too busy to answer, as
    /// when a whole fleet starts at once).
    static func open(_ settings: WorkerSettings, logger: Logger, metricsFactory: any MetricsFactory) async throws
        -> WorkerContext
    {
        let policy = startupPolicy(settings.startupWait)
        let transport: RedisPool.Transport =
            settings.redisEventLoops ? .eventLoops(MultiThreadedEventLoopGroup.singleton) : .threads
        let redis: any RedisClient & Closable = try await retrying(
            "connecting to Redis at start-up", policy: policy, logger: logger
        ) {
            if let nodes = settings.redisCluster {
                return try await RedisClusterClient.connect(
                    seeds: nodes, configuration: settings.redis, poolSize: settings.redisPoolSize, transport: transport,
                    logger: logger)
            }
            return try await RedisPool.connect(
                settings.redis, size: settings.redisPoolSize, transport: transport, logger: logger)
        }
        var postgres: PostgresPool?
        do {
            if let configuration = settings.postgres {
                let pool = PostgresPool(configuration, maximum: settings.postgresPoolSize, logger: logger)
                postgres = pool
                try await retrying("connecting to PostgreSQL at start-up", policy: policy, logger: logger) {
                    try await pool.withConnection { _ = try await $0.query("SELECT 1") }
                }
            }
            // Its close waits for what is in flight, within the shutdown's bound.
            let producer =
                settings.kafkaBootstrapServers.isEmpty
                ? nil
                : try KafkaProducer(
                    configuration: KafkaProducerConfiguration(
                        bootstrapServers: settings.kafkaBootstrapServers, properties: settings.producerProperties,
                        flushTimeoutMilliseconds: Int(min(settings.shutdownTimeout.milliseconds / 5, 10_000))),
                    logger: logger)
            let http = DownstreamClient(
                connectTimeout: settings.http.connectTimeout, callTimeout: settings.http.callTimeout,
                maxConnectionsPerHost: settings.http.maxConnections, metricsFactory: metricsFactory,
                ownPool: settings.http.ownPool)
            return WorkerContext(
                settings: settings, logger: logger, metricsFactory: metricsFactory, redis: redis, postgres: postgres,
                producer: producer, http: http)
        } catch {
            await postgres?.close()
            await redis.close()
            throw error
        }
    }

    /// Start-up's retries: an outage (`Failure.kind` transient) until `wait` has passed.
    static func startupPolicy(_ wait: Duration) -> RetryPolicy {
        let deadline = ContinuousClock.now + wait
        return RetryPolicy(backoff: Backoff(initial: .milliseconds(200), maximum: .seconds(5))) { error in
            Failure.kind(of: error) == .transient && ContinuousClock.now < deadline
        }
    }

    /// Takes `key` if free and runs `body` under it (see `RedisLease.holding`): renewed while
    /// it runs, cancelled the moment it is lost. Returns nil without running `body` if
    /// another holder has the key.
    public func withLease<T: Sendable>(
        _ key: String, ttl: Duration, _ body: @escaping @Sendable (RedisLease) async throws -> T
    ) async throws -> T? {
        guard let lease = try await RedisLease.acquire(key, ttl: ttl, on: redis, owner: owner) else { return nil }
        return try await lease.holding(logger: logger, metrics: leaseMetrics) { try await body(lease) }
    }

    /// Closes everything once, dependencies last: the producer is flushed first (dead
    /// letters and batches in flight get their delivery reports), then alerts are delivered,
    /// then the HTTP client, Redis and PostgreSQL are closed.
    func close() async {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        await kafkaProducer?.close()
        await alerts.close()
        await http.shutdown()
        await redis.close()
        await postgresPool?.close()
    }
}
