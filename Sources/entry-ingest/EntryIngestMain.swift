import EntryIngest
import PrewarmConfiguration
import PrewarmRuntime

/// `entry-ingest`: store-entry events into the 16 log shards and daily activity in Redis.
/// Configuration: `PREWARM_*` variables or flags (see README).
@main
struct EntryIngestMain {
    static func main() async {
        let topic = TopicCatalog.storeEntry
        await Worker.main(
            worker: "entry-ingest", group: topic.consumerGroup!, needsPostgres: true,
            migrations: EntryIngestSchema.migrations
        ) { dependencies in
            let handler = EntryIngestHandler(
                decoder: StoreEntryDecoder(), directory: StoreDirectory(database: dependencies.postgres!),
                writer: ShardWriter(database: dependencies.postgres!),
                activity: ActivityWriter(redis: dependencies.redis, timeZone: dependencies.settings.timeZone))
            return [TopicRoute(topic, handler: handler)]
        }
    }
}
