import BlockingIO
import Foundation
import Kafka
import Logging
import Metrics
import Postgres
import PrewarmConfiguration
import Prometheus
import Redis
import ServiceLifecycle

/// What a worker's handlers get from the runtime: connections opened and checked at
/// start-up.
public struct WorkerDependencies: Sendable {
    public let settings: WorkerSettings
    public let redis: RedisConnection
    public let postgres: PostgresConnection?
    public let metrics: WorkerMetrics
    /// Where a worker's own metrics go (the same `/metrics`).
    public let metricsFactory: any MetricsFactory
    public let logger: Logger
}

/// Starts a worker: connects to its stores (failing loudly if it cannot), builds the
/// consume loop from its routes, the scheduler from its jobs and the admin server, and runs
/// them in one `ServiceGroup` until SIGTERM or SIGINT, which shuts down gracefully within
/// `PREWARM_SHUTDOWN_TIMEOUT_S`. Each executable's `main` only calls this.
public enum Worker {
    /// What an executable's `main` calls: reads the settings from the environment and the
    /// command line, sets up logging, runs the worker, and exits 64 naming the variable when
    /// the configuration is bad, 1 when the worker fails.
    ///
    /// A worker's own settings come from `options`, reading the variables it lists in
    /// `variables` (flags may set them too); a bad one stops start-up like any other.
    /// `defaults` replaces the runtime's default of any variable for this worker.
    public static func main<Options: Sendable>(
        worker: String, group: String, needsPostgres: Bool, migrations: [Migration] = [],
        variables: [String] = [], defaults: [String: String] = [:], options: (EnvironmentReader) throws -> Options,
        routes: @escaping @Sendable (WorkerDependencies, Options) throws -> [TopicRoute],
        jobs: @escaping @Sendable (WorkerDependencies, Options) throws -> [ScheduledJob] = { _, _ in [] }
    ) async -> Never {
        let environment = ProcessInfo.processInfo.environment
        MallocArenas.limit(environment: environment)
        let settings: WorkerSettings
        let parsed: Options
        do {
            try EnvironmentReader(environment).bootstrapLogging()
            settings = try WorkerSettings(
                worker: worker, group: group, environment: environment,
                arguments: Array(CommandLine.arguments.dropFirst()),
                needsPostgres: needsPostgres, workerVariables: variables, workerDefaults: defaults)
            parsed = try options(settings.environment)
        } catch {
            FileHandle.standardError.write(Data("\(worker): \(error)\n".utf8))
            exit(64)
        }
        do {
            try await run(
                settings, migrations: migrations, routes: { try routes($0, parsed) }, jobs: { try jobs($0, parsed) })
            exit(0)
        } catch {
            Logger(label: "prewarm.\(worker)").critical("worker failed", metadata: ["error": "\(error)"])
            exit(1)
        }
    }

    public static func run(
        _ settings: WorkerSettings,
        migrations: [Migration] = [],
        routes: (WorkerDependencies) throws -> [TopicRoute],
        jobs: (WorkerDependencies) throws -> [ScheduledJob] = { _ in [] },
        onAdminListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let logger = Logger(label: "prewarm.\(settings.worker)")
        let registry = PrometheusCollectorRegistry()
        let metricsFactory = PrometheusMetricsFactory(registry: registry)
        let metrics = WorkerMetrics(group: settings.loop.groupID, factory: metricsFactory)
        let redis = try await RedisConnection.connect(settings.redis, logger: logger)
        var postgres: PostgresConnection?
        if let configuration = settings.postgres {
            let connection = try await PostgresConnection.connect(configuration, logger: logger)
            try await Migrator.migrate(connection, migrations, logger: logger)
            postgres = connection
        }
        let dependencies = WorkerDependencies(
            settings: settings, redis: redis, postgres: postgres, metrics: metrics, metricsFactory: metricsFactory,
            logger: logger)
        let loop = ConsumeLoop(
            configuration: settings.loop,
            consumer: try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(
                    groupID: settings.loop.groupID, bootstrapServers: settings.kafkaBootstrapServers,
                    properties: settings.kafkaProperties),
                logger: logger),
            deadLetterProducer: try KafkaProducer(
                configuration: KafkaProducerConfiguration(
                    bootstrapServers: settings.kafkaBootstrapServers, properties: settings.kafkaProperties),
                logger: logger),
            routes: try routes(dependencies), logger: logger, metrics: metrics)
        let scheduledJobs = try jobs(dependencies)
        let scheduler =
            scheduledJobs.isEmpty
            ? nil
            : Scheduler(
                jobs: scheduledJobs, timeZone: settings.timeZone, flags: RedisFlags(redis: redis),
                owner: "\(settings.worker)@\(ProcessInfo.processInfo.hostName)", logger: logger)
        var checks = [ReadinessCheck("redis") { try await redis.send("PING") }]
        if let postgres { checks.append(ReadinessCheck("postgres") { try await postgres.query("SELECT 1") }) }
        let admin = AdminServer(
            configuration: settings.admin, loops: [loop], checks: checks, registry: registry, scheduler: scheduler,
            logger: logger, onListening: onAdminListening)
        // Shut down in reverse: the loop first (finish, commit, leave), the admin server last.
        var services: [any Service] = [admin]
        if let scheduler { services.append(scheduler) }
        services.append(loop)
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = settings.shutdownTimeout
        logger.info(
            "worker starting",
            metadata: [
                "group": "\(settings.loop.groupID)", "admin_port": "\(settings.admin.port)",
                "kafka": "\(settings.kafkaBootstrapServers)", "redis": "\(settings.redis)",
            ])
        do {
            try await ServiceGroup(configuration: configuration).run()
        } catch {
            await redis.close()
            await postgres?.close()
            throw error
        }
        await redis.close()
        await postgres?.close()
        logger.info("worker stopped")
    }
}
