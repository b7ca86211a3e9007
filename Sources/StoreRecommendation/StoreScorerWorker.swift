import EntryIngest
import PrewarmConfiguration
import PrewarmRuntime

/// store-scorer, declared: the nightly job `store-score` fans the active users out in batches
/// on `store-rec.batches.v1`, and every pod of the group scores them.
public struct StoreScorerWorker: WorkerDefinition {
    public static let name = "store-scorer"
    public static let abstract =
        "nightly weighted store scores (store, category, zone) of the active users into STORE_RECOMMEND_ONE:{userId}"
    public static let consumerGroup = TopicCatalog.storeRecommendationBatches.consumerGroup
    public static let usesPostgres = true
    public static let migrations = EntryIngestSchema.migrations + StoreRecommendationSchema.migrations
    public static let settings = ScorerSettings.all
    /// Batches arrive one after another while the winner fans out: a consumer that waited
    /// out librdkafka's 500 ms fetch wait on a quiet partition would take them in clumps.
    public static let defaults = ["PREWARM_KAFKA_CONSUMER_FETCH_WAIT_MAX_MS": "100"]

    public let jobs: [ScheduledJob]

    public init(context: WorkerContext) async throws {
        let postgres = try context.postgres
        let options = try ScoringOptions(context.environment)
        let scorer = StoreScorer(
            options: options, cache: RecommendationCache(redis: context.redis),
            data: StoreData(pool: postgres), timeZone: context.settings.timeZone, logger: context.logger)
        jobs = [
            ScheduledJob(
                name: StoreScorer.jobName, schedule: options.schedule, catchUp: .once, deadline: options.deadline,
                work: .fanOut(
                    FanOut(
                        topic: TopicCatalog.storeRecommendationBatches.name, batchSize: options.batchSize,
                        source: scorer.active, prepare: { try await scorer.prepare($0) },
                        concurrency: options.batchConcurrency, handler: scorer)),
                onFinished: { try await scorer.finish($0) })
        ]
    }
}
