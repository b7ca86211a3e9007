import CoreMetrics
import Foundation
import Kafka
import Logging
import NIOPosix
import Postgres
import PrewarmConfiguration
import PrewarmRuntime
import Redis
import Synchronization

/// The two jobs of push-producer, worked by every pod from `book-rec.batches.v1`:
/// - `book-rec-prewarm` (daily, 00:01): per user of the day, the A/B service, then (if in the
///   experiment) the recommendation engine, into `rec:later_read:{uid}`;
/// - `book-rec-push` (hourly): per row of the hour, the cached recommendation, the material
///   service and one push message, claimed before it is produced and marked sent after its
///   delivery report.
public final class BookRecJobs: Sendable {
    public static let prewarmJob = "book-rec-prewarm"
    public static let pushJob = "book-rec-push"

    public let options: BookRecOptions
    public let data: TaskData
    public let cache: BookRecCache
    public let services: BookRecServices
    public let producer: KafkaProducer
    public let alerts: Alerts?
    public let pushTopic: String
    let logger: Logger
    let produced = Atomic<Int>(0)
    let metricsFactory: any MetricsFactory
    /// `prewarm_push_users_total{job,outcome}`.
    let users: MetricHandles<LabelPair, Counter>

    public init(
        options: BookRecOptions, data: TaskData, cache: BookRecCache, services: BookRecServices,
        producer: KafkaProducer, alerts: Alerts?, logger: Logger,
        pushTopic: String = TopicCatalog.bookRecommendationPush.name,
        metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.metricsFactory = metricsFactory
        self.users = MetricHandles { key in
            Counter(
                label: "prewarm_push_users_total", dimensions: [("job", key.first), ("outcome", key.second)],
                factory: metricsFactory)
        }
        self.options = options
        self.data = data
        self.cache = cache
        self.services = services
        self.producer = producer
        self.alerts = alerts
        self.logger = logger
        self.pushTopic = pushTopic
    }

    /// The two jobs, declared: the pre-warm daily (a missed day caught up once, alerted if not
    /// done by the deadline), the push hourly (a missed hour caught up only within
    /// `catchUpWindow`, else skipped and alerted), both fanned out on `topic`, each with its
    /// batches' work and its finish step (the final retry of the users that failed).
    public func scheduled(topic: String = TopicCatalog.bookRecommendationBatches.name) -> [ScheduledJob] {
        [
            ScheduledJob(
                name: Self.prewarmJob, schedule: options.prewarmSchedule, catchUp: .once,
                deadline: options.prewarmDeadlineAfterFire,
                work: .fanOut(
                    FanOut(
                        topic: topic, batchSize: options.batchSize, source: PrewarmTargets(data: data),
                        concurrency: options.batchConcurrency,
                        handler: BatchWork { batch in try await self.onEventLoop { try await self.prewarm(batch) } })),
                onFinished: { try await self.finishPrewarm($0) }),
            // An hour caught up together with its day's pre-warm (every pod was down since
            // before 00:01) waits for it, within the catch-up window, instead of pushing from
            // an empty cache.
            ScheduledJob(
                name: Self.pushJob, schedule: options.pushSchedule, catchUp: .within(options.catchUpWindow),
                deadline: .seconds(3000),
                after: .init(job: Self.prewarmJob, period: { String($0.prefix(8)) }, atMost: options.catchUpWindow),
                work: .fanOut(
                    FanOut(
                        topic: topic, batchSize: options.batchSize, source: HourTargets(data: data),
                        concurrency: options.batchConcurrency,
                        handler: BatchWork { batch in try await self.onEventLoop { try await self.push(batch) } })),
                onFinished: { try await self.finishPush($0) }),
        ]
    }

    /// A batch's tasks run on one event loop, where its HTTP connections' I/O runs too.
    func onEventLoop(_ body: () async throws -> BatchResult) async throws -> BatchResult {
        let executor = EventLoopExecutor.singleton.executor(of: MultiThreadedEventLoopGroup.singleton.next())
        return try await withTaskExecutorPreference(executor, operation: body)
    }

    /// A batch's counts, once per batch: into the run's hash in Redis and
    /// `prewarm_push_users_total{job,outcome}`.
    func count(_ counts: [String: Int], failed: [Int64] = [], _ batch: JobBatch) async throws {
        guard
            try await cache.count(
                counts, failed: failed, batch: batch.batch, job: batch.job, period: batch.period,
                attempt: batch.attempt)
        else { return }
        increment(counts, batch.job)
    }

    func increment(_ counts: [String: Int], _ job: String) {
        for (outcome, value) in counts where value > 0 {
            users[LabelPair(job, outcome)].increment(by: value)
        }
    }

}
