import BlockingIO
import CoreMetrics
import Foundation
import Kafka
import Logging
import Metrics
import Postgres
import PrewarmConfiguration
import Prometheus
import Redis
import ServiceLifecycle
import Synchronization
import UnixSignals

/// Runs a declared worker. Its executable's `main` is one line:
///
/// ```swift
/// @main enum Main { static func main() async { await Worker.main(EntryIngestWorker.self) } }
/// ```
public enum Worker {
    /// Reads and checks the settings (flags over environment; `--help` lists them), sets up
    /// logging and metrics, runs the worker until SIGTERM or SIGINT, and exits: 0 when it
    /// stopped cleanly, 64 naming the variable when the configuration is bad, 1 when it failed.
    public static func main<Definition: WorkerDefinition>(
        _ definition: Definition.Type, arguments: [String] = Array(CommandLine.arguments.dropFirst())
    ) async -> Never {
        let environment = ProcessInfo.processInfo.environment
        MallocArenas.limit(environment: environment)
        if arguments.contains("--help") || arguments.contains("-h") {
            print(help(definition))
            exit(0)
        }
        let settings: WorkerSettings
        do {
            settings = try WorkerSettings.of(definition, environment: environment, arguments: arguments)
            try settings.environment.bootstrapLogging()
        } catch {
            FileHandle.standardError.write(Data("\(definition.name): \(error)\n".utf8))
            exit(64)
        }
        // Once per process, so that Hummingbird's request metrics land in /metrics too.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        await boundShutdown(of: definition.name, within: settings.shutdownTimeout)
        do {
            try await run(definition, settings: settings, registry: registry)
            exit(0)
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("\(definition.name): \(error)\n".utf8))
            exit(64)
        } catch {
            Logger(label: "prewarm.\(definition.name)").critical("worker failed", metadata: ["error": "\(error)"])
            exit(1)
        }
    }

    /// From the first SIGTERM or SIGINT, the process has `bound` to end: its graceful
    /// shutdown gets most of it (the service group then cancels what is left, and the clients
    /// close); a call that no cancellation reaches (a produce to a broker that stopped
    /// answering, a C call blocked on a dead peer) cannot keep it past the bound, whatever is
    /// unreachable. It then exits with status 1, naming the bound.
    static func boundShutdown(of name: String, within bound: Duration) async {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        Task.detached {
            for await _ in signals {
                DispatchQueue.global().asyncAfter(deadline: .now() + bound.seconds) {
                    FileHandle.standardError.write(
                        Data(
                            "\(name): did not stop within PREWARM_SHUTDOWN_TIMEOUT_S (\(bound)); exiting with what is committed\n"
                                .utf8))
                    exit(1)
                }
                return
            }
        }
    }

    /// Opens the context, migrates, builds the worker and runs its services in one
    /// `ServiceGroup`: the admin server first and the consume loop last, so that shutdown (in
    /// reverse) stops the loop first (finish, commit, leave the group), then the worker's
    /// services and the scheduler, then the admin server; the context is closed after.
    public static func run<Definition: WorkerDefinition>(
        _ definition: Definition.Type, settings: WorkerSettings,
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), stop: WorkerStop? = nil,
        onAdminListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let logger = Logger(label: "prewarm.\(definition.name)")
        RFC3339.displayZone = settings.timeZone
        let context = try await WorkerContext.open(
            settings, logger: logger, metricsFactory: PrometheusMetricsFactory(registry: registry))
        do {
            try await serve(
                definition, context: context, registry: registry, stop: stop, onAdminListening: onAdminListening)
        } catch {
            await context.close()
            throw error
        }
        await context.close()
        logger.info("worker stopped")
    }

    private static func serve<Definition: WorkerDefinition>(
        _ definition: Definition.Type, context: WorkerContext, registry: PrometheusCollectorRegistry,
        stop: WorkerStop?, onAdminListening: @escaping @Sendable (Int) async -> Void
    ) async throws {
        let settings = context.settings
        if definition.usesPostgres {
            let policy = WorkerContext.startupPolicy(settings.startupWait)
            try await retrying("migrating the schema", policy: policy, logger: context.logger) {
                _ = try await context.postgres.withConnection { connection in
                    try await Migrator.migrate(
                        connection, RuntimeSchema.migrations + definition.migrations, logger: context.logger)
                }
            }
        }
        let worker = try await definition.init(context: context)
        if !worker.producesTo.isEmpty {
            do {
                try await context.producer.prepare(topics: worker.producesTo)
            } catch {
                context.logger.warning(
                    "topics not known yet; the first send to each fetches its metadata",
                    metadata: ["topics": "\(worker.producesTo)", "error": "\(error)"])
            }
        }
        var loop: ConsumeLoop?
        if let configuration = settings.loop {
            loop = ConsumeLoop(
                configuration: configuration,
                consumer: try KafkaConsumer(
                    configuration: KafkaConsumerConfiguration(
                        groupID: configuration.groupID, bootstrapServers: settings.kafkaBootstrapServers,
                        properties: settings.consumerProperties),
                    logger: context.logger),
                deadLetterProducer: try context.producer,
                deadLetterStore: definition.usesPostgres ? DeadLetterStore(pool: try context.postgres) : nil,
                deadLetterMarks: DeadLetterMarks(
                    redis: context.redis, group: configuration.groupID, retention: settings.deadLetterMarkRetention),
                routes: worker.routes + ScheduledJob.batchRoutes(worker.jobs, runs: context.jobRuns),
                logger: context.logger,
                metricsFactory: context.metricsFactory, liveness: context.liveness, alerts: context.alerts,
                onLag: LagBoard(redis: context.redis, group: configuration.groupID, owner: context.owner).publisher())
        }
        let jobs = worker.jobs
        let scheduler =
            jobs.isEmpty
            ? nil
            : Scheduler(
                jobs: jobs, timeZone: settings.timeZone, runs: context.jobRuns, producer: context.kafkaProducer,
                alerts: context.alerts, logger: context.logger, metricsFactory: context.metricsFactory,
                retryAlertAfter: settings.retryAlertAfter)
        var checks = [ReadinessCheck("redis") { try await context.redis.send("PING") }]
        if definition.usesPostgres {
            checks.append(
                ReadinessCheck("postgres") {
                    try await context.postgres.withConnection { _ = try await $0.query("SELECT 1") }
                })
        }
        let adminPort = Mutex<Int?>(nil)
        let admin = AdminServer(
            configuration: settings.admin, loops: loop.map { [$0] } ?? [], liveness: context.liveness,
            checks: checks + worker.readinessChecks, registry: registry, scheduler: scheduler,
            routes: worker.adminRoutes, logger: context.logger,
            onListening: { port in
                adminPort.withLock { $0 = port }
                await onAdminListening(port)
            })
        let started = Date()
        let heartbeat = PodHeartbeat(
            board: PodBoard(redis: context.redis), worker: settings.worker, logger: context.logger,
            metricsFactory: context.metricsFactory
        ) {
            guard let port = adminPort.withLock({ $0 }) else { return nil }
            let readiness = await admin.readinessReport()
            return PodRecord(
                worker: settings.worker, owner: context.owner, admin: settings.admin.advertised(port: port),
                group: settings.loop?.groupID, jobs: jobs.map(\.name), ready: readiness.status == "ready",
                problems: (readiness.problems ?? []) + (readiness.notes ?? []), startedAt: started, seenAt: Date())
        }
        var services: [any Service] = [admin, heartbeat]
        if let scheduler { services.append(scheduler) }
        services += worker.services
        if let loop { services.append(loop) }
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: context.logger)
        // Most of the bound for the services; the rest for the clients to close (`boundShutdown`).
        configuration.maximumGracefulShutdownDuration = settings.shutdownTimeout * 0.75
        context.logger.info(
            "worker starting",
            metadata: [
                "group": "\(settings.loop?.groupID ?? "-")", "admin_port": "\(settings.admin.port)",
                "kafka": "\(settings.kafkaBootstrapServers.isEmpty ? "-" : settings.kafkaBootstrapServers)",
                "redis": "\(settings.redis)",
                "jobs": "\(jobs.map(\.name))", "services": "\(worker.services.count)",
            ])
        let group = ServiceGroup(configuration: configuration)
        await stop?.attach(group)
        try await group.run()
    }

    /// `--help`: what the worker is and every setting it reads, from their declarations.
    public static func help<Definition: WorkerDefinition>(_ definition: Definition.Type) -> String {
        var lines = [
            "\(definition.name): \(definition.abstract)", "",
            "usage: \(definition.name) [--flag value ...]", "",
            "Every setting is an environment variable; the flag of the same name overrides it (flags show in",
            "ps: keep secrets in the environment).",
        ]
        if definition.usesKafka {
            lines[lines.count - 1] += " Any librdkafka property is PREWARM_KAFKA_<NAME> (both"
            lines += [
                "clients), PREWARM_KAFKA_CONSUMER_<NAME> or PREWARM_KAFKA_PRODUCER_<NAME>, or --kafka-<name>."
            ]
        }
        lines.append("")
        func section(_ title: String, _ settings: [SettingDescription]) {
            guard !settings.isEmpty else { return }
            lines.append(title)
            for setting in settings {
                var head = "  \(setting.variable)  \(setting.flag)"
                if setting.isSecret {
                    head += "  (secret)"
                } else if let value = definition.defaults[setting.variable] ?? setting.defaultText {
                    head += "  default \(value)"
                } else if setting.isRequired {
                    head += "  required"
                }
                lines.append(head)
                lines.append("      \(setting.meaning); \(setting.accepted)")
            }
            lines.append("")
        }
        section("\(definition.name) settings:", definition.settings)
        section(
            "runtime settings:",
            RuntimeSettings.declared(
                consumes: definition.consumerGroup != nil, usesKafka: definition.usesKafka,
                usesPostgres: definition.usesPostgres))
        return lines.joined(separator: "\n")
    }
}
