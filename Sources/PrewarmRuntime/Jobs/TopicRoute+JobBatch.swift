import Kafka
import PrewarmConfiguration

extension TopicRoute {
    /// The route of a batch topic (what `ScheduledJob.batchRoutes` makes of the declared
    /// fan-outs): every message is a `JobBatch` worked by its job's handler, up to
    /// `concurrency` batches at once, and recorded in its run's progress. Its dead letters go
    /// to `<topic>.dlq`.
    public init(
        batchesOfTopic topic: String, runs: JobRuns, concurrency: Int = 1, handlers: [String: any JobBatchHandler]
    ) {
        self.init(
            topic: topic, deadLetterTopic: TopicSpec.deadLetterTopic(of: topic),
            handler: JobBatchTopicHandler(runs: runs, handlers: handlers, concurrency: concurrency))
    }
}
