import PrewarmConfiguration
import PrewarmRuntime
import ServiceLifecycle

/// entry-ingest, declared: `store.entry.v1` into the 16 log shards and the daily activity in
/// Redis, the nightly archive of old rows (job `entry-archive`), and the activity rebuilt from
/// the log when Redis lost it (`ActivityGuard`, and the nightly job `activity-reconcile`).
public struct EntryIngestWorker: WorkerDefinition {
    public static let name = "entry-ingest"
    public static let abstract =
        "store-entry events into the 16 PostgreSQL log shards and daily activity in Redis; the nightly archive"
    public static let consumerGroup = TopicCatalog.storeEntry.consumerGroup
    public static let usesPostgres = true
    public static let migrations = EntryIngestSchema.migrations
    public static let settings = EntryIngestSettings.all

    /// It catches up on backlogs, so large batches. A COPY has a fixed cost in the server,
    /// and PostgreSQL builds a tuple slot per row for the first thousand rows of each COPY,
    /// so a batch should give each of the 16 shards well over a thousand rows (see the
    /// README's benchmark section for the measurements behind 24,000).
    public static let defaults = ["PREWARM_BATCH_MAX_MESSAGES": "24000"]

    public let routes: [TopicRoute]
    public let jobs: [ScheduledJob]
    public let services: [any Service]

    public init(context: WorkerContext) async throws {
        let postgres = try context.postgres
        let options = try EntryIngestOptions(context.environment)
        let activity = ActivityWriter(redis: context.redis, timeZone: context.settings.timeZone)
        let handler = EntryIngestHandler(
            decoder: StoreEntryDecoder(maximumFutureSkew: options.maximumFutureSkew),
            directory: StoreDirectory(pool: postgres, maximumAge: options.storeCacheMaxAge),
            writer: ShardWriter(pool: postgres, archiveAfterDays: options.archive.afterDays),
            activity: activity, metricsFactory: context.metricsFactory)
        let reconciler = ActivityReconciler(pool: postgres, writer: activity, logger: context.logger)
        services = [
            ActivityGuard(
                reconciler: reconciler, checkEvery: options.activityCheck, alerts: context.alerts,
                owner: context.owner)
        ]
        routes = [TopicRoute(TopicCatalog.storeEntry, handler: handler)]
        let archiver = EntryArchiver(
            pool: postgres, timeZone: context.settings.timeZone, settings: options.archive,
            logger: context.logger, metricsFactory: context.metricsFactory)
        jobs = [
            ScheduledJob(
                name: EntryArchiver.jobName, schedule: options.archive.schedule,
                work: .inPlace { _, _ in _ = try await archiver.run() }),
            ScheduledJob(
                name: ActivityReconciler.jobName, schedule: options.activityReconcileSchedule,
                work: .inPlace { _, _ in _ = try await reconciler.run() }),
        ]
    }
}
