import EntryIngest
import Postgres
import PrewarmConfiguration
import PrewarmRuntime

/// `entry-ingest`: store-entry events into the 16 log shards and daily activity in Redis,
/// and the nightly archive of old rows (job `entry-archive`). Configuration: `PREWARM_*`
/// variables or flags (see README).
@main
struct EntryIngestMain {
    static func main() async {
        let topic = TopicCatalog.storeEntry
        await Worker.main(
            worker: "entry-ingest", group: topic.consumerGroup!, needsPostgres: true,
            migrations: EntryIngestSchema.migrations, variables: EntryIngestOptions.variables,
            defaults: EntryIngestOptions.runtimeDefaults, options: EntryIngestOptions.init,
            routes: { dependencies, options in
                let database = dependencies.postgres!
                let handler = EntryIngestHandler(
                    decoder: StoreEntryDecoder(maximumFutureSkew: options.maximumFutureSkew),
                    directory: StoreDirectory(database: database, maximumAge: options.storeCacheMaxAge),
                    writer: ShardWriter(
                        pool: PostgresPool(
                            dependencies.settings.postgres!, maximum: 2 * dependencies.settings.loop.concurrentBatches,
                            logger: dependencies.logger),
                        archiveAfterDays: options.archive.afterDays),
                    activity: ActivityWriter(redis: dependencies.redis, timeZone: dependencies.settings.timeZone))
                return [TopicRoute(topic, handler: handler)]
            },
            jobs: { dependencies, options in
                let archiver = EntryArchiver(
                    database: dependencies.settings.postgres!, timeZone: dependencies.settings.timeZone,
                    settings: options.archive, logger: dependencies.logger,
                    metricsFactory: dependencies.metricsFactory)
                return [
                    ScheduledJob(name: EntryArchiver.jobName, schedule: options.archive.schedule) { _ in
                        _ = try await archiver.run()
                    }
                ]
            })
    }
}
