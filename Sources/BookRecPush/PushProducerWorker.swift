import Foundation
import PrewarmConfiguration
import PrewarmRuntime

/// push-producer, declared: the daily pre-warm `book-rec-prewarm` and the hourly push
/// `book-rec-push`, both fanned out on `book-rec.batches.v1` and worked by every pod.
public struct PushProducerWorker: WorkerDefinition {
    public static let name = "push-producer"
    public static let abstract =
        "\"read later\" book recommendations pre-warmed at 00:01 and pushed hourly from the cache, one push per user and slot"
    public static let consumerGroup = TopicCatalog.bookRecommendationBatches.consumerGroup
    public static let usesPostgres = true
    public static let migrations = BookRecPushSchema.migrations
    public static let settings = BookRecSettings.all
    public static let defaults = ["PREWARM_KAFKA_CONSUMER_FETCH_WAIT_MAX_MS": "100"]

    public let jobs: [ScheduledJob]
    public let producesTo = [TopicCatalog.bookRecommendationPush.name]

    public init(context: WorkerContext) async throws {
        let postgres = try context.postgres
        let producer = try context.producer
        let options = try BookRecOptions(context.environment)
        let data = TaskData(pool: postgres, options: options)
        let jobs = BookRecJobs(
            options: options, data: data, cache: BookRecCache(redis: context.redis),
            services: BookRecServices(
                options: options, http: context.http, logger: context.logger, metricsFactory: context.metricsFactory),
            producer: producer, alerts: context.alerts, logger: context.logger,
            metricsFactory: context.metricsFactory)
        self.jobs = jobs.scheduled()
    }
}
