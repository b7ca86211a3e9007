import PrewarmConfiguration
import ServiceLifecycle

/// A worker, declared: what it is, what it reads, consumes and runs. The runtime reads and
/// checks its settings, opens everything long-lived (pools, producer, HTTP client), applies
/// its migrations, hands it one `WorkerContext`, runs what it declares in one `ServiceGroup`
/// and closes it all on shutdown. An executable's `main` is `await Worker.main(MyWorker.self)`.
///
/// Only `name`, `abstract` and `init(context:)` are required; everything else defaults to
/// nothing.
public protocol WorkerDefinition: Sendable {
    /// The executable's name: logs, `--help`, the Redis client name, job-run owners.
    static var name: String { get }
    /// One line for `--help`.
    static var abstract: String { get }
    /// The consumer group, for a worker that consumes (its `routes`).
    static var consumerGroup: String? { get }
    /// Whether it needs PostgreSQL (then `context.postgres`, tasks and the retry table).
    static var usesPostgres: Bool { get }
    /// Whether it uses Kafka (then `context.producer`); by default, when it consumes. A worker
    /// that does not opens no Kafka client and reads no Kafka setting.
    static var usesKafka: Bool { get }
    /// Its schema changes, applied at start-up after the runtime's.
    static var migrations: [Migration] { get }
    /// Its own settings; the runtime's are added.
    static var settings: [SettingDescription] { get }
    /// Its defaults for any variable, runtime ones included (the environment and flags
    /// override them).
    static var defaults: [String: String] { get }

    /// Builds the worker from the context: reads its settings (`context.environment`),
    /// makes its handlers. A `ConfigurationError` stops start-up (exit 64).
    init(context: WorkerContext) async throws

    /// The topics its consumer group reads, each with its handler.
    var routes: [TopicRoute] { get }
    /// Its scheduled jobs.
    var jobs: [ScheduledJob] { get }
    /// Its long-running services (task runners, retry drainers, a public HTTP server), run
    /// beside the consume loop and stopped before it on shutdown.
    var services: [any Service] { get }
    /// Its own admin routes (parameterised triggers, status endpoints).
    var adminRoutes: [AdminRoute] { get }
    /// What `/readyz` checks besides Redis, PostgreSQL and the group.
    var readinessChecks: [ReadinessCheck] { get }
    /// The topics its own code produces to: the runtime fetches their metadata at start-up,
    /// so the first send to each (the first push of a run) does not wait for it.
    var producesTo: [String] { get }
}

extension WorkerDefinition {
    public static var consumerGroup: String? { nil }
    public static var usesPostgres: Bool { false }
    public static var usesKafka: Bool { consumerGroup != nil }
    public static var migrations: [Migration] { [] }
    public static var settings: [SettingDescription] { [] }
    public static var defaults: [String: String] { [:] }
    public var routes: [TopicRoute] { [] }
    public var jobs: [ScheduledJob] { [] }
    public var services: [any Service] { [] }
    public var adminRoutes: [AdminRoute] { [] }
    public var readinessChecks: [ReadinessCheck] { [] }
    public var producesTo: [String] { [] }

    /// Every setting the worker reads: its own, then the runtime's.
    public static var declaredSettings: [SettingDescription] {
        settings
            + RuntimeSettings.declared(consumes: consumerGroup != nil, usesKafka: usesKafka, usesPostgres: usesPostgres)
    }
}
